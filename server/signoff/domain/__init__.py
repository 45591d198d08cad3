"""The pure core of signoff: states and transitions, models, canonical hashing, errors.

Nothing here does I/O or imports the other layers.
"""
