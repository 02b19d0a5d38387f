"""Pure logic the nodes share: prompts, attempts, answer checks, hedging, checkers, agreement, confidence,
calibration, costing and the query classifier. Nothing here reads the graph's context: what it needs is passed."""
