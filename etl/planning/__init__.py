"""Plans: what a run would read, write and touch, inspectable before it runs."""
