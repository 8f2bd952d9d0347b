"""Icons and other assets, shipped inside the wheel as package data."""
