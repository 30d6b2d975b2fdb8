"""Chinese end to end (issue 26): CMRC 2018 tuning of the Chinese span finder,
retrieval options, and their reports."""
