"""What a sweep's experiment looks like in the MLflow UI (3.17): the runs, the key metrics, the front.

Three experiment tags and one URL:
- `mlflow.experimentKind = custom_model_development` marks a model-training experiment (MLflow 3's
  experiment kinds); the 3.17 UI itself follows its GenAI / Model-training switch, which the URL sets;
- `mlflow.note.content`, the description the experiment page shows: what the sweeps are, where the front is;
- `mlflow.sharedViewState.<key>`, a saved runs view (the UI's "Views" menu): trials sorted by the primary
  objective, flat rather than folded under their parent run, with the objectives, the searched params and
  the state as columns, and an objective-vs-objective scatter in the chart view.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import urlencode

from mlflow.tracking import MlflowClient

from sweeps.records.results import recorded_name
from sweeps.space.search_space import SearchSpace
from weightmom.contract import test_twin

KIND_TAG, KIND = "mlflow.experimentKind", "custom_model_development"
DESCRIPTION_TAG = "mlflow.note.content"
VIEW_KEY = "sweep-trials"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"
MAX_PARAM_COLUMNS = 6


def ensure_experiment(client: MlflowClient, space: SearchSpace, artifact_location: str | None) -> str:
    """The space's experiment, created if new. Kind and description are set where missing (a user's
    edit stays); the saved view is always the current space's."""
    tags = {KIND_TAG: KIND, DESCRIPTION_TAG: description(space)}
    experiment = client.get_experiment_by_name(space.name)
    if experiment is None:
        experiment_id = client.create_experiment(space.name, artifact_location=artifact_location, tags=tags)
    else:
        experiment_id = experiment.experiment_id
        for key, value in tags.items():
            if key not in experiment.tags:
                client.set_experiment_tag(experiment_id, key, value)
    client.set_experiment_tag(experiment_id, VIEW_TAG, runs_view(space))
    return experiment_id


def description(space: SearchSpace) -> str:
    """Two lines of Markdown: what the sweeps are, and where each one's Pareto front is."""
    objectives = " and ".join(o.metric for o in space.objectives)
    return (f"Sweeps of `{space.name}` over {objectives}: one parent run per sweep, one child run per trial.  \n"
            "Each sweep's Pareto front: its parent run (`... sweep (folder)`) -> Artifacts -> `pareto/`.")


def runs_view(space: SearchSpace) -> str:
    """The saved view, in the envelope the 3.17 UI reads: {name, createdAt, updatedAt, state (JSON text)}."""
    twins = [twin for m in space.metrics if (twin := test_twin(m)) is not None]
    metrics = list(dict.fromkeys([*space.metrics, *twins, "test_accuracy", "density"]))
    params = [recorded_name(name) for name in space.params][:MAX_PARAM_COLUMNS]
    state = {
        # Sorting by a metric also lists child runs flat instead of folded under the parent run.
        "orderByKey": f"metrics.`{space.metrics[0]}`", "orderByAsc": space.modes[0] == "min",
        "selectedColumns": [*(f"metrics.`{m}`" for m in metrics), *(f"params.`{p}`" for p in params),
                            "tags.`state`"],
    }
    if len(space.metrics) >= 2:
        state["compareRunSections"] = [{"uuid": "objectives", "name": "Objectives", "display": True,
                                        "isReordered": False, "deleted": False, "isGenerated": False,
                                        "columns": 1, "cardHeight": 420}]
        state["compareRunCharts"] = [{"uuid": "objectives-scatter", "type": "SCATTER", "deleted": False,
                                      "metricSectionId": "objectives", "runsCountToCompare": 100, "isGenerated": False,
                                      "xaxis": {"key": space.metrics[1], "type": "METRIC"},
                                      "yaxis": {"key": space.metrics[0], "type": "METRIC"}}]
    now = int(time.time() * 1000)
    return json.dumps({"name": f"Trials by {space.metrics[0]}", "createdAt": now, "updatedAt": now,
                       "state": json.dumps(state)})


def runs_page(experiment_id: str) -> str:
    """The experiment's runs in the saved view, as a URL path. Without `workflowType` the 3.17 UI opens
    every experiment in GenAI mode, on an empty traces overview."""
    query = urlencode({"workflowType": "machine_learning", "viewStateShareKey": VIEW_KEY})
    return f"/#/experiments/{experiment_id}/runs?{query}"


def sweep_runs_page(out: str | Path) -> str:
    """runs_page for the sweep in folder `out` (`make mlflow-ui` prints it)."""
    from sweeps.records.state import load_state

    return runs_page(load_state(Path(out)).experiment_id)
