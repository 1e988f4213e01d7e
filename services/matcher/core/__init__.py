"""The matcher's pure core: the book and the matching engine. No I/O, no clock."""
