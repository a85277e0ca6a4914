"""The change feed: diary events for families, pushed (subscriptions) or polled (`diaryChanges`)."""
