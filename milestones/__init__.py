"""The course milestones: each folder holds one judge, one demo and its configuration."""
