"""Provider health: circuit breakers (state machine and stores), the board of all breakers, the hedge budget."""
