"""gradlint.model package."""
