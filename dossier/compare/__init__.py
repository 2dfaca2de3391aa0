"""`dossier compare`: what changed between two models, unit by unit (see run.compare)."""
