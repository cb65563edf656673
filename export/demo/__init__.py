"""The built-in demo avatar: procedural head, articulation, lip-sync data, training, evaluation."""
