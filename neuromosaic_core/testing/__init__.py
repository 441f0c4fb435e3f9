"""Contract test suites for third-party plugin authors (subclass them in your tests)."""
