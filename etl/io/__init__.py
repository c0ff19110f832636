"""Reading sources and reaching storage (local disk, object stores)."""
