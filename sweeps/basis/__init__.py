"""The wing below every other: Pareto math over objective vectors, and the names a space may choose from
(samplers, MO-ASHA's promotion rules). Plain Python and numpy: it imports no Ray, Optuna or MLflow."""
