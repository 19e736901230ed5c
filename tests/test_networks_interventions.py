"""Networks, personas and interventions: graph structure, matchings on edges, personas
in the prompt, committed seats that never deviate, ablation = base model outputs,
transplant = donor outputs, and that all of it replays after kills."""

from __future__ import annotations

import json

import numpy as np
import pytest

from societies.choices import ChoiceRequest
from societies.personas import with_persona
from societies.population import LoraSpec, PopulationModel
from societies.records import Message
from societies.topology import InteractionGraph, Topology, build_graph
from tests.conftest import QUICKSTART, read_decisions, run_tiny, tiny_overrides
from trainer.config import ConfigError, load_experiment
from trainer.run_dir import RunLayout

AGENTS = [f"agent_{i:02d}" for i in range(10)]


# ----- topologies ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("topology", "kw", "degrees", "edges"),
    [
        ("ring_lattice", {"k": 4}, {4}, 20),
        ("random_regular", {"k": 3}, {3}, 15),
        ("watts_strogatz", {"k": 4, "p": 0.3}, None, 20),  # rewiring keeps the edge count
        ("barabasi_albert", {"m": 2}, None, 2 * (10 - 2)),
    ],
)
def test_each_topology_has_its_degree_structure(topology, kw, degrees, edges):
    import networkx as nx

    graph = build_graph(topology, AGENTS, seed=3, **kw)
    assert len(graph.edges) == edges and len(set(graph.edges)) == edges
    assert all(a != b for a, b in graph.edges)
    if degrees is not None:
        assert set(graph.degrees().values()) == degrees
    assert nx.is_connected(graph._nx())
    if topology == "ring_lattice":  # each agent's neighbours are the 2 on either side
        assert graph.neighbours("agent_00") == ["agent_01", "agent_02", "agent_08", "agent_09"]
    if topology == "barabasi_albert":  # preferential attachment: hubs well above m
        assert max(graph.degrees().values()) >= 4
    # the same seed draws the same graph
    assert build_graph(topology, AGENTS, seed=3, **kw) == graph


def test_erdos_renyi_is_resampled_until_connected():
    import networkx as nx

    for seed in range(10):
        graph = build_graph("erdos_renyi", AGENTS, seed=seed, p=0.25)
        assert nx.is_connected(graph._nx())


def test_complete_graph_and_edge_list(tmp_path):
    complete = build_graph("complete", AGENTS, seed=0)
    assert set(complete.degrees().values()) == {9} and complete.max_matching() == 5
    path = tmp_path / "edges.txt"
    path.write_text("# a star and one more edge\n0 1\n0 2\nagent_00 agent_03\n2 3\n")
    star = build_graph("edge_list", AGENTS[:4], seed=0, edge_list=path)
    assert star.edges == (
        ("agent_00", "agent_01"),
        ("agent_00", "agent_02"),
        ("agent_00", "agent_03"),
        ("agent_02", "agent_03"),
    )
    assert star.max_matching() == 2


@pytest.mark.parametrize(
    ("topology", "kw", "message"),
    [
        ("ring_lattice", {"k": 3}, "network.k=3"),
        ("random_regular", {"k": 3, "agents": 5}, "n·k odd"),
        ("erdos_renyi", {"p": 1.5}, "network.p=1.5"),
        ("barabasi_albert", {"m": 10}, "network.m=10"),
        ("hexagonal", {}, "accepted"),
        ("edge_list", {}, "needs network.edge_list"),
    ],
)
def test_bad_graph_parameters_are_named(topology, kw, message):
    agents = AGENTS[: kw.pop("agents", 10)]
    with pytest.raises(ValueError, match=message):
        build_graph(topology, agents, seed=0, **kw)


def test_a_bad_edge_list_line_is_named(tmp_path):
    path = tmp_path / "edges.txt"
    path.write_text("0 1\n0 agent_77\n")
    with pytest.raises(ValueError, match=r"edges.txt:2: 'agent_77' is not an agent"):
        build_graph("edge_list", AGENTS, seed=0, edge_list=path)


@pytest.mark.parametrize("topology", ["ring_lattice", "barabasi_albert", "erdos_renyi"])
def test_matchings_use_only_graph_edges_and_are_disjoint(topology):
    graph = build_graph(topology, AGENTS, seed=1, k=2, m=1, p=0.3)
    rng = np.random.default_rng(0)
    edges = set(graph.edges)
    pairs_per_round = min(3, graph.max_matching())
    seen = set()
    for _ in range(200):
        pairs = graph.matching(pairs_per_round, rng)
        assert len(pairs) == pairs_per_round
        ends = [a for pair in pairs for a in pair]
        assert len(set(ends)) == len(ends)  # disjoint
        assert all(tuple(sorted(p, key=AGENTS.index)) in edges for p in pairs)
        seen |= {tuple(sorted(p)) for p in pairs}
    if topology == "ring_lattice":  # 3 of at most 5 pairs: every edge can be drawn, and is
        assert len(seen) == len(edges)


def test_a_matching_larger_than_the_graph_allows_is_an_error():
    star = InteractionGraph(
        Topology.EDGE_LIST, tuple(AGENTS[:4]), (("agent_00", "agent_01"), ("agent_00", "agent_02"))
    )
    with pytest.raises(ValueError, match="largest matching has 1"):
        star.matching(2, np.random.default_rng(0))


def test_a_config_asking_for_more_pairs_than_the_graph_holds_fails_before_starting(tmp_path):
    from trainer.generation_loop import Experiment

    overrides = tiny_overrides(
        tmp_path, **{"network.topology": "barabasi_albert", "network.m": 1, "population.size": 4}
    )
    config = load_experiment(QUICKSTART, overrides)
    graph = build_graph("barabasi_albert", [f"agent_{i:02d}" for i in range(4)], 0, m=1)
    if graph.max_matching() >= 2:
        pytest.skip("this draw holds 2 pairs")  # pragma: no cover - depends on the draw
    with pytest.raises(ValueError, match="largest matching"):
        Experiment(config)
    assert not (tmp_path / "t").exists()


def test_the_donor_game_takes_only_the_complete_graph():
    donor = "configs/donor_game/quickstart.yaml"
    with pytest.raises(ConfigError, match="network.topology"):
        load_experiment(donor, ["network.topology=ring_lattice", "network.k=2"])


# ----- personas -------------------------------------------------------------------------


def test_a_persona_goes_before_the_system_message():
    messages = (Message("system", "rules"), Message("user", "go"))
    assert with_persona(messages, "You are bold.") == (
        Message("system", "You are bold.\n\nrules"),
        Message("user", "go"),
    )
    assert with_persona(messages, None) == messages
    assert with_persona((Message("user", "go"),), "P")[0] == Message("system", "P")


# ----- interventions in a run ----------------------------------------------------------

INTERVENED = {
    "run.generations": 2,
    "population.size": 6,
    "game.pairs_per_round": 3,  # a perfect matching of the 6-ring: everyone plays each round
    "game.rounds": 6,
    "network.topology": "ring_lattice",
    "network.k": 2,
    "population.personas": '["You are careful.", "You are bold."]',
    "interventions": (
        "[{kind: committed_minority, generation: 0, round: 3, share: 0.34},"
        " {kind: ablation, generation: 1, round: 2, agents: [agent_00]},"
        " {kind: transplant, generation: 1, round: 4, agents: [agent_01], donor: agent_05}]"
    ),
    # Interventions act on rounds and saved adapters, whichever trainer wrote them;
    # batched is what the published configs use, resumes a cut group bit for bit
    # (test_distill_memory; TRL's resume is killed in test_fault_injection), and on the
    # tiny model TRL's ~3 s set-up per agent (2-core AMD EPYC) was two thirds of these runs' time.
    "distill.backend": "batched",
}


@pytest.fixture(scope="module")
def intervened(tiny_model_path, tmp_path_factory):
    return run_tiny(tmp_path_factory.mktemp("intervened"), **INTERVENED).run_dir


def events(run_dir, g):
    return [json.loads(x) for x in RunLayout(run_dir).interventions(g).read_text().splitlines()]


def test_the_run_pairs_along_the_ring_and_saves_its_graph(intervened):
    graph = json.loads((intervened / "graph.json").read_text())
    assert graph["graph"]["topology"] == "ring_lattice"
    edges = {tuple(sorted((e["source"], e["target"]))) for e in graph["links"]}
    assert len(edges) == 6
    for g in (0, 1):
        for d in read_decisions(intervened, g):
            assert tuple(sorted((d["agent"], d["partner"]))) in edges


def test_personas_reach_the_prompts_of_their_agents_only(intervened):
    for d in read_decisions(intervened, 0):
        system = d["messages"][0]["content"]
        persona = {"agent_00": "You are careful.", "agent_01": "You are bold."}.get(d["agent"])
        if persona:
            assert system.startswith(persona + "\n\n")
        else:
            assert "careful" not in system and "bold" not in system


def test_committed_agents_never_deviate_and_start_at_the_scheduled_round(intervened):
    (event,) = [e for e in events(intervened, 0) if e["kind"] == "committed_minority"]
    assert event["round"] == 3 and len(event["agents"]) == round(0.34 * 6)
    option = event["option"]
    before = [d for d in read_decisions(intervened, 0) if d["round"] < 3]
    played = [d["action"] for d in before]
    assert played.count(option) == min(played.count(o) for o in before[0]["options"])
    for g in (0, 1):
        for d in read_decisions(intervened, g):
            committed = d["agent"] in event["agents"] and (g, d["round"]) >= (0, 3)
            assert (d["policy"] == f"fixed_name:{option}") == committed
            if committed:
                assert d["action"] == option and d["scoring"] == "scripted"
    # still held in generation 1 (no until_generation), from its round 0
    assert [e for e in events(intervened, 1) if e["kind"] == "committed_minority"][0]["round"] == 0


def rescore(model_path, adapter, decisions):
    """The option probabilities ``adapter`` gives these decisions' prompts."""
    pop = PopulationModel(model_path, ["x"], LoraSpec(), adapter_dirs={"x": adapter})
    rows = pop.score(
        [
            ChoiceRequest("x", tuple(Message(**m) for m in d["messages"]), tuple(d["options"]))
            for d in decisions
        ]
    )
    return [r.probs for r in rows]


def test_ablation_gives_the_base_models_outputs(intervened, tiny_model_path):
    from transformers import AutoModelForCausalLM

    layout = RunLayout(intervened)
    after = [
        d for d in read_decisions(intervened, 1) if d["agent"] == "agent_00" and d["round"] >= 2
    ]
    assert after
    # the initial adapter has B = 0: its outputs are the base model's
    base = rescore(tiny_model_path, layout.initial_adapter("agent_00"), after)
    own = rescore(tiny_model_path, layout.adapter(0, "agent_00"), after)
    for d, b, o in zip(after, base, own, strict=True):
        assert d["option_probs"] == pytest.approx(b, abs=1e-5)
        assert not np.allclose(b, o, atol=1e-6) or d["option_probs"] == pytest.approx(o)
    state = AutoModelForCausalLM.from_pretrained(tiny_model_path).state_dict()
    assert state  # the base model is what the zero-delta adapter sits on
    entry = next(
        json.loads(x)
        for x in [json.dumps(e) for e in json.loads(layout.lineage.read_text())["adapters"]]
        if json.loads(x)["adapter"] == "generation_001/adapters/agent_00"
    )
    assert entry["parents"] == ["initial_adapters/agent_00"]
    assert entry["details"]["start_replaced_by_intervention"] == "generation_000/adapters/agent_00"


def test_transplant_gives_the_donors_outputs(intervened, tiny_model_path):
    layout = RunLayout(intervened)
    ds = read_decisions(intervened, 1)
    after = [d for d in ds if d["agent"] == "agent_01" and d["round"] >= 4]
    before = [d for d in ds if d["agent"] == "agent_01" and d["round"] < 4]
    assert after and before
    donor = rescore(tiny_model_path, layout.adapter(0, "agent_05"), after)
    for d, p in zip(after, donor, strict=True):
        assert d["option_probs"] == pytest.approx(p, abs=1e-5)
    own = rescore(tiny_model_path, layout.adapter(0, "agent_01"), before)
    for d, p in zip(before, own, strict=True):
        assert d["option_probs"] == pytest.approx(p, abs=1e-5)
    (event,) = [e for e in events(intervened, 1) if e["kind"] == "transplant"]
    assert event["adapter"] == "generation_000/adapters/agent_05" and event["round"] == 4


def test_interventions_evolution_and_personas_replay_exactly_after_kills(tmp_path, monkeypatch):
    from trainer.fault_injection import PHASES, check_kill_anywhere, phase_of

    monkeypatch.setenv("WANDB_SILENT", "true")
    extra = {
        **INTERVENED,
        "evolution.survive": 0.5,
        "evolution.crossover": "true",
        "evolution.mutation_scale": 0.01,
        "evolution.immigrants": 0.2,
    }
    overrides = [o for o in tiny_overrides("x", **extra) if not o.startswith("run.output_dir=")]
    # Interventions act in the rollout, evolution after distillation: kills go there first.
    focus = ("rollout", "evolution", "distillation")
    report = check_kill_anywhere(
        QUICKSTART, overrides, tmp_path, kills=4, seed=2, focus=focus, progress=lambda _: None
    )
    assert report.differences == [], "\n".join(report.differences)
    assert len(report.kills) == 4 and set(focus) <= set(report.phases), report.phases
    points = (tmp_path / "trace_uninterrupted.txt").read_text().splitlines()  # evolution's too
    assert {phase_of(p) for p in points} <= set(PHASES), {phase_of(p) for p in points}


def test_debaters_see_only_their_neighbours_replies():
    from dataclasses import replace as _replace

    from societies.games.debate import DebateRules
    from societies.games.debate_society import DebateSocietyGame
    from societies.games.protocol import RoundContext
    from tests.test_data_builders import naming

    agents = [f"agent_{i:02d}" for i in range(6)]
    ring = build_graph("ring_lattice", agents, seed=0, k=2)
    game = DebateSocietyGame(DebateRules(), root_seed=0, graph=ring)
    history = [
        _replace(naming(0, 0, a, None, "A", "A"), game="debate", text=f"reply of {a}")
        for a in agents
    ]
    (turn,) = [
        t
        for t in game.turns(agents, history, RoundContext("r", 0, 1, 0, 0.0))
        if t.agent == "agent_00"
    ]
    prompt = turn.messages[-1].content
    assert "reply of agent_01" in prompt and "reply of agent_05" in prompt
    assert all(f"reply of agent_0{i}" not in prompt for i in (2, 3, 4))
    everyone = DebateSocietyGame(DebateRules(), root_seed=0)
    (turn,) = [
        t
        for t in everyone.turns(agents, history, RoundContext("r", 0, 1, 0, 0.0))
        if t.agent == "agent_00"
    ]
    assert all(f"reply of agent_0{i}" in turn.messages[-1].content for i in range(1, 6))
