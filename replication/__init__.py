"""Reads on hot standbys (PostgreSQL streaming replicas): which ones serve, and which
database serves each GET so that every client still reads its own writes."""
