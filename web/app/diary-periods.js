// Which school period a week belongs to (for the averages shown under it).

/** Does any period of `periods` contain the day `iso`? */
export function inAnyPeriod(periods, iso) {
  return periods.some((period) => period.startsOn <= iso && iso <= period.endsOn);
}

/**
 * The period of the week from–to: one that overlaps it (the first), else the last one
 * that ended before it (holidays), else the current or first one.
 */
export function periodOfWeek(periods, from, to) {
  const overlapping = periods.find((period) => period.startsOn <= to && from <= period.endsOn);
  if (overlapping) return overlapping;
  const before = periods.filter((period) => period.endsOn < from);
  if (before.length > 0) return before[before.length - 1];
  return periods.find((period) => period.isCurrent) || periods[0];
}
