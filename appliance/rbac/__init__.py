"""Role-based access control: the permission catalogue, actors, and the one policy check."""
