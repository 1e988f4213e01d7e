"""Price-source adapters: each turns one kind of source into `SourceQuote`s and `SourceFailure`s."""
