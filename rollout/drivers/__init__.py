"""Drivers: one module per provider, load balancer, smoke runner or builder."""
