"""Generations that outlive their connection: stored as they go, resumable and stoppable from
any process (the ai layer's side of ``streaming.run``)."""
