"""The typo model: keyboard layouts, visual skeletons, and the shape of a single edit."""
