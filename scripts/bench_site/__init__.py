"""`make bench`'s anchor site: the project plus one minimal DRF broker view (m)."""
