"""Model providers: the adapter contract, the Gemini, Perplexity and local adapters, the registry, configuration
and prices, the error taxonomy, resilience (circuit breakers, hedge budget) and test doubles. Imports nothing of
ours outside this package."""
