"""PNG pictures: `grid` (tiling and saving), then one module per model family
(`reconstruction`, `vae`, `pixel`), each the registry's `pictures` hook of its models."""
