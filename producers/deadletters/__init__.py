"""Dead letters' one home: ``mountsync deadletters`` (``cli``) and replaying every kind of letter
(``replay``: transport messages, inbox entries, undecodable changes, worker tasks). The store
itself is catalog code (``mountsync.shared.catalog.deadletters``)."""
