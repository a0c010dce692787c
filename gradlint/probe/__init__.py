"""gradlint.probe package."""
