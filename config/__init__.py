"""The shipped default config (it runs as is) and the crisis data: package data of Hearth."""
