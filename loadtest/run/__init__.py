"""The main job (cluster -> inventory -> agents -> measurements -> verdict -> report), its
config and its typed record."""
