"""Every rule, one module each, grouped by family; importing a module registers its rule."""
