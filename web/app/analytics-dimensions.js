// What the analyst can ask for: the two measures, the dimensions they group by, and how a
// group's key is named on the page.

const CODES = {
  Н: "Н — без уважительной причины",
  Б: "Б — болезнь",
  У: "У — уважительная причина",
  П: "П — по заявлению родителей",
  О: "О — опоздание",
  ОП: "ОП — опоздание по уважительной причине",
};

// Dimensions both measures have. `field`: the key's field and the document's flag.
const COMMON = {
  municipality: {
    field: "municipality",
    value: "MUNICIPALITY",
    title: "Муниципалитет",
    by: "по муниципалитетам",
    name: (key) => key.municipality.name,
  },
  school: {
    field: "school",
    value: "SCHOOL",
    title: "Школа",
    by: "по школам",
    name: (key) => key.school.name,
  },
  grade: {
    field: "grade",
    value: "GRADE",
    title: "Параллель",
    by: "по параллелям",
    name: (key) => `${key.grade} класс`,
  },
  subject: {
    field: "subject",
    value: "SUBJECT",
    title: "Предмет",
    by: "по предметам",
    name: (key) => key.subject.name,
  },
  period: {
    field: "period",
    value: "PERIOD",
    title: "Учебный период",
    by: "по учебным периодам",
    name: (key) => `${key.period.title} ${key.period.yearTitle}`,
  },
};

/** The ids of the page's lists, in order; "kind" is each measure's own dimension. */
export const DIMENSION_IDS = ["municipality", "school", "grade", "subject", "period", "kind"];

/** The two measures: their document, their own dimension and how their figures read. */
export const MEASURES = {
  marks: {
    title: "Оценки",
    document: "AnalyticsMarks",
    field: "marks",
    kind: {
      field: "workType",
      value: "WORK_TYPE",
      title: "Вид работы",
      by: "по видам работ",
      name: (key) => key.workType.name,
    },
    count: "markCount",
    countTitle: "Оценок",
    countWord: "оценок",
    allWord: "оценки",
    value: "weightedAverage",
    valueTitle: "Средний балл",
    chartTitle: "Средний взвешенный балл",
  },
  attendance: {
    title: "Посещаемость",
    document: "AnalyticsAttendance",
    field: "attendance",
    kind: {
      field: "code",
      value: "CODE",
      title: "Код посещаемости",
      by: "по кодам посещаемости",
      name: (key) => CODES[key.code] || key.code,
    },
    count: "records",
    countTitle: "Отметок",
    countWord: "отметок посещаемости",
    allWord: "отметки посещаемости",
    value: "rate",
    valueTitle: "Доля ученико-уроков",
    chartTitle: "Доля ученико-уроков с отметкой о пропуске или опоздании",
  },
};

/** A dimension of a measure by its list id. */
export function dimension(measure, id) {
  return id === "kind" ? measure.kind : COMMON[id];
}

/** The variables of the measure's document: groupBy and the flags of the grouped keys. */
export function variables(dimensions) {
  const values = { groupBy: dimensions.map((d) => d.value) };
  for (const d of dimensions) values[d.field] = true;
  return values;
}
