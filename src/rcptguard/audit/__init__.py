"""Archive audit: `rcptguard scan` finds what already went astray (`scan`), writes the findings (`findings`) and a
report people read (`report`), counting the archive's own history as `learn` does (`history`)."""
