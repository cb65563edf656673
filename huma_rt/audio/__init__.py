"""Audio front end: log-mel features and input conditioning."""
