"""doorkeep.models — model manifests (TOML) and label files; never model binaries."""
