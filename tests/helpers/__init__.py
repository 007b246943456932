"""What several test modules share: contexts, a local Ray, toy networks, sweep spaces."""
