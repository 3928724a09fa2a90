"""How trials are chosen and stopped: Optuna samplers, the budget-aware searcher, early stopping."""
