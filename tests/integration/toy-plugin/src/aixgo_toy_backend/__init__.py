"""A third-party backend plugin used by the installed-wheel discovery test."""
