"""The door: each command's config checked once and turned into typed values, and objects built from config nodes. Registers the resolvers conf/ uses."""

from ddpm_lit import resolvers

resolvers.register()
