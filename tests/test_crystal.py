"""Crystal tokenisation: Wyckoff tables, strings, tokens, grammar masks and structures."""

import collections
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import arjax
from arjax import crystal as ac
from arjax.crystal.tokens import END_TOKEN, PAD

# --- Wyckoff tables ---------------------------------------------------------------------------


def test_group_225_multiplicities_match_international_tables():
    assert ac.multiplicities(225) == (4, 4, 8, 24, 24, 32, 48, 48, 48, 96, 96, 192)
    assert ac.wyckoff_letters(225) == tuple("abcdefghijkl")


def test_group_47_has_27_letters_ending_in_capital_a():
    letters = ac.wyckoff_letters(47)
    assert len(letters) == 27 and letters[-1] == "A"
    assert ac.multiplicities(47)[-1] == 8


def test_all_groups_have_1731_letters_in_total():
    assert sum(len(ac.wyckoff_letters(g)) for g in range(1, 231)) == 1731


def test_general_position_is_last_and_has_three_free_coordinates():
    for g in range(1, 231):
        mult = ac.multiplicities(g)
        assert ac.representatives(g)[-1] == ("x", "y", "z")
        assert mult[-1] == max(mult) == len(ac.general_positions(g)[0])
        assert ac.num_free_coordinates(g)[-1] == 3


def test_every_orbit_at_generic_coordinates_has_the_multiplicity_of_its_letter():
    generic = (0.1234, 0.2718, 0.0577)
    for g in range(1, 231):
        for letter, mult, free in zip(ac.wyckoff_letters(g), ac.multiplicities(g), ac.free_coordinates(g)):
            assert len(ac.orbit(g, letter, generic[: len(free)])) == mult, (g, letter)


def test_known_representatives_and_fixed_letters():
    assert ac.representative(225, "f") == ("x", "x", "x")
    assert ac.representative(225, "g") == ("x", "1/4", "1/4")
    assert ac.fixed_letters(225) == ("a", "b", "c", "d")
    assert ac.fixed_letters(1) == ()
    assert ac.representative(191, "o") == ("x", "2x", "z")
    assert ac.free_coordinates(191)[14] == ("x", "z")


def test_crystal_systems_and_lattice_parameters():
    expected = {1: 6, 14: 4, 62: 3, 139: 2, 166: 2, 194: 2, 225: 1}
    assert {g: len(ac.lattice_parameter_names(g)) for g in expected} == expected
    counts = collections.Counter(ac.crystal_system(g) for g in range(1, 231))
    assert counts == {
        "triclinic": 2,
        "monoclinic": 13,
        "orthorhombic": 59,
        "tetragonal": 68,
        "trigonal": 25,
        "hexagonal": 27,
        "cubic": 36,
    }


def test_rocksalt_orbits_give_eight_atoms_at_known_positions():
    s = ac.to_structure(ac.parse_crystal("225-a-Na-b-Cl-X-5.64"))
    na = {tuple(p) for p, e in zip(s.frac_coords.tolist(), s.species) if e == "Na"}
    assert na == {(0, 0, 0), (0, 0.5, 0.5), (0.5, 0, 0.5), (0.5, 0.5, 0)}
    assert collections.Counter(s.species) == {"Na": 4, "Cl": 4}
    np.testing.assert_allclose(s.lattice, 5.64 * np.eye(3))


# --- strings and tokens -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def perov():
    records = ac.load_perov5()
    crystals = [ac.parse_crystal(r["crystal"]) for r in records]
    tokenizer = ac.CrystalTokenizer.for_crystals(crystals, coordinate_bins=32, length_bins=61, margin=0.05)
    return records, crystals, tokenizer


def _formula_counts(formula: str) -> collections.Counter:
    counts = collections.Counter()
    for element, number in re.findall(r"([A-Z][a-z]?)(\d*)", formula):
        counts[element] += int(number or 1)
    return counts


def test_perov5_ships_both_splits_with_properties(perov):
    records, crystals, _ = perov
    assert collections.Counter(r["split"] for r in records) == {"val": 3787, "test": 3785}
    assert all(math.isfinite(r[name]) for r in records for name in ("heat_all", "heat_ref", "dir_gap", "ind_gap"))
    assert len(ac.load_perov5("test")) == 3785


def test_perov5_strings_round_trip_through_parse_and_format(perov):
    records, crystals, _ = perov
    assert [c.to_string() for c in crystals] == [r["crystal"] for r in records]


def test_perov5_encode_decode_keeps_group_composition_and_multiplicities(perov):
    records, crystals, tokenizer = perov
    tokens = tokenizer.encode_batch(crystals)
    assert tokens.shape == (len(crystals), tokenizer.num_positions)
    for record, original, x in zip(records, crystals, tokens):
        decoded = tokenizer.decode(x)
        assert decoded.space_group == original.space_group
        assert sorted(zip(decoded.multiplicities, (s.element for s in decoded.sites))) == sorted(
            zip(original.multiplicities, (s.element for s in original.sites))
        )
        assert collections.Counter(decoded.composition) == _formula_counts(record["formula"])
    for x in tokens[::25]:
        np.testing.assert_array_equal(tokenizer.encode(tokenizer.decode(x)), x)


def test_perov5_decoded_structures_hold_every_atom_of_the_formula(perov):
    records, crystals, tokenizer = perov
    for record, original in zip(records[::10], crystals[::10]):
        structure = ac.to_structure(tokenizer.decode(tokenizer.encode(original)))
        assert collections.Counter(structure.species) == _formula_counts(record["formula"])
        assert structure.frac_coords.shape == (5, 3)
        assert np.all((structure.frac_coords >= 0) & (structure.frac_coords < 1))


def test_from_structure_recovers_perovskite_and_rocksalt_from_p1_cells():
    pytest.importorskip("spglib")
    frac = [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
    srtio3 = ac.from_structure(3.905 * np.eye(3), frac, ["Sr", "Ti", "O", "O", "O"])
    assert srtio3.to_string() == "221-a-Sr-b-Ti-c-O-X-3.905"
    rocksalt = ac.to_structure(ac.parse_crystal("225-a-Na-b-Cl-X-5.64"))
    shift = np.mod(rocksalt.frac_coords + 0.1, 1.0)
    assert ac.from_structure(rocksalt.lattice, shift, list(rocksalt.species)).to_string() == "225-a-Na-b-Cl-X-5.64"


def test_from_structure_round_trips_a_low_symmetry_shipped_crystal():
    pytest.importorskip("spglib")
    text = ac.load_perov5("val")[0]["crystal"]
    s = ac.to_structure(ac.parse_crystal(text))
    found = ac.from_structure(s.lattice, s.frac_coords, list(s.species))
    assert found.space_group == ac.parse_crystal(text).space_group
    assert found.composition == ac.parse_crystal(text).composition


def test_ase_export_has_the_atoms_of_the_orbits():
    pytest.importorskip("ase")
    atoms = ac.to_ase(ac.parse_crystal("221-a-Sr-b-Ti-c-O-X-3.905"))
    assert atoms.get_chemical_formula() == "O3SrTi"
    np.testing.assert_allclose(atoms.cell.lengths(), [3.905] * 3)
    np.testing.assert_allclose(atoms.get_volume(), 3.905**3)


def test_pymatgen_export_has_the_rocksalt_composition():
    pytest.importorskip("pymatgen")
    structure = ac.to_pymatgen(ac.parse_crystal("225-a-Na-b-Cl-X-5.64"))
    assert structure.composition.reduced_formula == "NaCl" and len(structure) == 8


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, position, token, words",
    [
        ("225-a-Qq-X-5.6", 2, "Qq", "unknown element"),
        ("225-a-Na-m-Cl-X-5.6", 3, "m", "no Wyckoff letter"),
        ("47-a-Na-B-Cl-X-3-4-5", 3, "B", "no Wyckoff letter"),
        ("231-a-Na-X-5.6", 0, "231", "space group"),
        ("225-a-Na-e-Cl-oops-X-5.6", 5, "oops", "not a number"),
        ("225-a-Na-a-Cl-X-5.6", 3, "a", "only one site"),
        ("225-X-5.6", 1, "X", "at least one site"),
        ("225-a-Na-X-5.6-7.0", 5, "7.0", "unexpected token"),
    ],
)
def test_malformed_strings_name_the_offending_token_and_position(text, position, token, words):
    with pytest.raises(ValueError, match=rf"token {position} '{re.escape(token)}'.*{words}"):
        ac.parse_crystal(text)


def test_truncated_string_says_what_is_missing():
    with pytest.raises(ValueError, match="ends after token 4.*free coordinate x"):
        ac.parse_crystal("225-a-Na-e-Cl")


def test_encoding_outside_the_vocabulary_names_the_token():
    tok = ac.CrystalTokenizer(space_groups=[225], elements=["Na", "Cl"], max_sites=2)
    with pytest.raises(ValueError, match="token 4: element 'K'"):
        tok.encode("225-a-Na-b-K-X-5.64")
    with pytest.raises(ValueError, match="token 0: space group 221"):
        tok.encode("221-a-Na-X-5.64")
    with pytest.raises(ValueError, match="lattice length a = 50.0"):
        tok.encode("225-a-Na-X-50")


def test_decoding_invalid_tokens_names_the_position():
    tok = ac.CrystalTokenizer(space_groups=[221], elements=["Sr", "Ti", "O"], max_sites=3, max_atoms=5)
    x = tok.encode("221-a-Sr-b-Ti-c-O-X-3.9")
    swapped = x.copy()
    swapped[[1, 3]] = swapped[[3, 1]]
    with pytest.raises(ValueError, match="position 3.*'w:a' follows 'w:b'|position 3.*'a' follows 'b'"):
        tok.decode(swapped)
    bad_element = x.copy()
    bad_element[2] = tok.coordinate_start
    with pytest.raises(ValueError, match="position 2: .*expected an element"):
        tok.decode(bad_element)


def test_unknown_inputs_to_tables_raise():
    with pytest.raises(ValueError, match="space group must be an integer in 1..230"):
        ac.multiplicities(0)
    with pytest.raises(ValueError, match="letters abcdefghijkl, got 'z'"):
        ac.representative(225, "z")
    with pytest.raises(ValueError, match="unknown element symbols"):
        ac.CrystalTokenizer(elements=["Na", "Xx"])


# --- grammar masks ----------------------------------------------------------------------------

SMALL = dict(
    space_groups=[2, 221],
    elements=["Na", "Cl"],
    max_sites=2,
    max_atoms=4,
    coordinate_bins=2,
    length_range=(3.0, 4.0),
    length_bins=2,
    angle_range=(90.0, 90.0),
    angle_bins=1,
)


def _log_prob(dist, x, chunk: int = 2048) -> np.ndarray:
    """``dist.log_prob`` in fixed-size chunks, so that every call reuses one compilation."""
    x = np.asarray(x, np.int32)
    padded = np.concatenate([x, np.repeat(x[:1], -len(x) % chunk, axis=0)])
    out = [np.asarray(dist.log_prob(jnp.asarray(padded[k : k + chunk]))) for k in range(0, len(padded), chunk)]
    return np.concatenate(out)[: len(x)]


def _valid_sequences(tok) -> list[tuple[int, ...]]:
    """Every valid sequence, generated from the grammar's specification (not from the rule)."""
    out = []
    for gi, g in enumerate(tok.space_groups):
        mult, free = ac.multiplicities(g), ac.num_free_coordinates(g)
        lattice_kinds = [name in ("alpha", "beta", "gamma") for name in ac.lattice_parameter_names(g)]

        def sites(prefix, last, atoms, count, used):
            if count:
                yield prefix
            if count == tok.max_sites:
                return
            for w in range(len(mult)):
                if w < last or (w == last and free[w] == 0) or atoms + mult[w] > tok.atom_cap:
                    continue
                for e in range(len(tok.elements)):
                    if len(used | {e}) > tok.element_cap:
                        continue
                    for coords in np.ndindex(*(tok.coordinate_bins,) * free[w]):
                        site = [tok.letter_start + w, tok.element_start + e] + [
                            tok.coordinate_start + c for c in coords
                        ]
                        yield from sites(prefix + site, w, atoms + mult[w], count + 1, used | {e})

        for body in sites([tok.group_start + gi], -1, 0, 0, frozenset()):
            choices = [range(tok.angle_bins) if angle else range(tok.length_bins) for angle in lattice_kinds]
            for bins in np.ndindex(*(len(c) for c in choices)):
                lattice = [
                    (tok.angle_start if angle else tok.length_start) + b for angle, b in zip(lattice_kinds, bins)
                ]
                seq = body + [END_TOKEN] + lattice
                out.append(tuple(seq + [PAD] * (tok.num_positions - len(seq))))
    return out


@pytest.fixture(scope="module")
def small():
    tok = ac.CrystalTokenizer(**SMALL)
    valid = _valid_sequences(tok)
    net = arjax.nn.MADE(
        num_positions=tok.num_positions, num_categories=tok.num_categories, width=32, depth=1, key=jax.random.key(3)
    )
    return tok, valid, arjax.Autoregressive(net, allowed=tok.allowed)


def test_small_vocabulary_is_enumerable(small):
    tok, valid, _ = small
    assert (tok.num_positions, tok.num_categories) == (18, 25)
    assert len(valid) == len(set(valid)) > 1000


def test_probabilities_of_all_valid_sequences_sum_to_one(small):
    tok, valid, dist = small
    log_p = _log_prob(dist, valid)
    assert np.all(np.isfinite(log_p))
    assert float(np.exp(np.logaddexp.reduce(log_p.astype(np.float64)))) == pytest.approx(1.0, abs=1e-4)
    for x in valid[:: max(1, len(valid) // 200)]:
        tok.decode(np.asarray(x))


def test_invalid_sequences_have_probability_zero(small):
    tok, valid, dist = small
    valid_set = set(valid)
    rng = np.random.default_rng(0)
    base = np.asarray(valid)[rng.integers(len(valid), size=3000)]
    mutated = base.copy()
    rows = np.arange(len(base))
    mutated[rows, rng.integers(tok.num_positions, size=len(base))] = rng.integers(tok.num_categories, size=len(base))
    uniform = rng.integers(tok.num_categories, size=(1000, tok.num_positions))
    candidates = np.concatenate([mutated, uniform]).astype(np.int32)
    is_valid = np.array([tuple(x) in valid_set for x in candidates.tolist()])
    assert 100 < (~is_valid).sum() < len(candidates)
    log_p = _log_prob(dist, candidates)
    np.testing.assert_array_equal(np.isfinite(log_p), is_valid)
    for x in candidates[~is_valid][:50]:
        with pytest.raises(ValueError, match="position"):
            tok.decode(x)


def test_grammar_rows_are_the_tokens_that_extend_a_valid_prefix_and_ignore_the_suffix(small):
    tok, valid, _ = small
    followers = collections.defaultdict(set)
    for x in valid:
        for i in range(tok.num_positions):
            followers[x[:i]].add(x[i])
    prefixes = sorted(followers)[:: max(1, len(followers) // 300)]
    rule = jax.jit(tok.allowed)
    rng = np.random.default_rng(1)
    for prefix in prefixes:
        x = jnp.asarray(list(prefix) + [0] * (tok.num_positions - len(prefix)), jnp.int32)
        row = np.asarray(rule(x, len(prefix)))
        assert set(np.flatnonzero(row).tolist()) == followers[prefix], prefix
        noise = rng.integers(tok.num_categories, size=tok.num_positions - len(prefix))
        suffixed = jnp.asarray(list(prefix) + noise.tolist(), jnp.int32)
        np.testing.assert_array_equal(np.asarray(rule(suffixed, len(prefix))), row)


def test_element_cap_keeps_exactly_the_sequences_with_few_enough_elements_and_they_sum_to_one():
    # 221 with a cap of 5 atoms: up to three sites (a, b, c or d); three elements, at most two per crystal.
    options = dict(space_groups=[221], elements=["Na", "Cl", "K"], max_sites=3, max_atoms=5, coordinate_bins=2,
                   length_range=(3.0, 4.0), length_bins=2, angle_bins=1)  # fmt: skip
    capped = ac.CrystalTokenizer(**options, max_elements=2)
    valid, every = _valid_sequences(capped), _valid_sequences(ac.CrystalTokenizer(**options))
    elements = range(capped.element_start, capped.coordinate_start)  # no free coordinates: elements at 2, 4, 6
    distinct = {x: len({t for t in x[2:7:2] if t in elements}) for x in every}
    assert set(valid) == {x for x in every if distinct[x] <= 2} and max(distinct.values()) == 3
    net = arjax.nn.MADE(capped.num_positions, capped.num_categories, width=32, depth=1, key=jax.random.key(4))
    dist = arjax.Autoregressive(net, allowed=capped.allowed)
    log_p = _log_prob(dist, every, chunk=512)
    np.testing.assert_array_equal(np.isfinite(log_p), [distinct[x] <= 2 for x in every])
    assert float(np.exp(np.logaddexp.reduce(log_p.astype(np.float64)))) == pytest.approx(1.0, abs=1e-4)
    followers = collections.defaultdict(set)
    for x in valid:
        for i in range(capped.num_positions):
            followers[x[:i]].add(x[i])
    rule = jax.jit(capped.allowed)
    for prefix in sorted(followers):
        x = jnp.asarray(list(prefix) + [0] * (capped.num_positions - len(prefix)), jnp.int32)
        assert set(np.flatnonzero(np.asarray(rule(x, len(prefix)))).tolist()) == followers[prefix], prefix
    with pytest.raises(ValueError, match="3 distinct elements, more than max_elements=2"):
        capped.encode("221-a-Na-b-Cl-c-K-X-3.0")
    with pytest.raises(ValueError, match="position 6: K would be element 3, more than max_elements=2"):
        capped.decode(np.asarray([x for x in every if distinct[x] == 3][0]))


def test_samples_follow_the_grammar(small):
    tok, valid, dist = small
    x = np.asarray(dist.sample(jax.random.key(0), (300,)))
    assert set(map(tuple, x.tolist())) <= set(valid)


@pytest.mark.slow
def test_cached_transformer_sampling_follows_the_grammar(small):
    tok, valid, _ = small
    net = arjax.nn.Transformer(
        tok.num_positions, tok.num_categories, d_model=16, num_heads=2, num_layers=1, key=jax.random.key(2)
    )
    samples, log_p = arjax.Autoregressive(net, allowed=tok.allowed).sample_and_log_prob(jax.random.key(7), (64,))
    assert bool(jnp.all(jnp.isfinite(log_p)))
    assert set(map(tuple, np.asarray(samples).tolist())) <= set(valid)


@pytest.fixture(scope="module")
def perov_model(perov):
    _, _, tokenizer = perov
    net = arjax.nn.MADE(tokenizer.num_positions, tokenizer.num_categories, width=32, depth=1, key=jax.random.key(1))
    return arjax.Autoregressive(net, allowed=tokenizer.allowed)


def test_perov5_tokens_are_allowed_by_the_grammar(perov, perov_model):
    _, crystals, tokenizer = perov
    tokens = tokenizer.encode_batch(crystals[::20])
    assert np.all(np.isfinite(_log_prob(perov_model, tokens, chunk=128)))


def test_sampled_perov5_sequences_have_finite_log_prob_and_decode(perov, perov_model):
    _, _, tokenizer = perov
    samples, log_p = perov_model.sample_and_log_prob(jax.random.key(5), (128,))
    assert bool(jnp.all(jnp.isfinite(log_p)))
    np.testing.assert_allclose(_log_prob(perov_model, samples, chunk=128), log_p, rtol=1e-4, atol=1e-3)
    for sample in np.asarray(samples):
        structure = ac.to_structure(tokenizer.decode(sample))
        assert 1 <= len(structure.species) <= tokenizer.max_atoms


def test_atom_cap_and_fixed_letters_are_enforced_by_the_rule():
    tok = ac.CrystalTokenizer(space_groups=[225], elements=["Na", "Cl"], max_sites=3, max_atoms=12)
    rule = jax.jit(tok.allowed)
    x = jnp.asarray(tok.encode("225-a-Na-b-Cl-X-5.64"))
    names = [tok.vocabulary[k] for k in np.flatnonzero(np.asarray(rule(x, 3)))]
    assert names == ["X", "w:b", "w:c"]
    names = [tok.vocabulary[k] for k in np.flatnonzero(np.asarray(rule(x, 5)))]
    assert names == ["X"]


# --- cloze MCMC on a crystal template -----------------------------------------------------------

CLOZE_ELEMENTS = ["Sr", "Ba", "Ti", "Zr", "O", "F"]


@pytest.mark.slow  # 80k chain states for a TV below 0.05 over 216 states: ~1.5 CPU-minutes
def test_cloze_mcmc_on_a_perovskite_template_reaches_the_exact_posterior():
    """Sample p(X | y) for the A, B and X elements of ``221-a-?-b-?-c-?-X-3.9`` (6³ states, enumerated)."""
    tok = ac.CrystalTokenizer(space_groups=[221], elements=CLOZE_ELEMENTS, max_sites=3, max_atoms=5,
                              coordinate_bins=2, length_range=(3.5, 4.3), length_bins=5, angle_range=(90.0, 90.0),
                              angle_bins=1)
    net = arjax.nn.MADE(num_positions=tok.num_positions, num_categories=tok.num_categories, width=32, depth=1,
                        key=jax.random.key(5))
    model = arjax.Autoregressive(net, allowed=tok.allowed)
    template = np.asarray(tok.encode("221-a-Sr-b-Ti-c-O-X-3.9"), np.int32)
    holes = np.array([2, 4, 6])
    elements = tok.element_start + np.arange(len(CLOZE_ELEMENTS))
    states = np.repeat(template[None], len(elements) ** 3, axis=0)
    states[:, holes] = np.stack(np.meshgrid(elements, elements, elements, indexing="ij"), -1).reshape(-1, 3)
    scores = 1.5 * np.asarray(jax.random.normal(jax.random.key(7), (len(holes), len(elements))))

    def log_likelihood(x):  # a stand-in property model p(y | element at each hole)
        return jnp.sum(jnp.asarray(scores)[jnp.arange(len(holes)), x[holes] - tok.element_start])

    log_post = _log_prob(model, states) + np.asarray(jax.vmap(log_likelihood)(jnp.asarray(states)))
    exact = np.exp(log_post - log_post.max())
    exact /= exact.sum()

    algorithm = arjax.mcmc.cloze(lambda x: model.log_prob(x) + log_likelihood(x), model, positions=holes, mode="mh")
    num_chains, num_sweeps = 20_000, 12
    starts = jnp.broadcast_to(jnp.asarray(template), (num_chains, tok.num_positions))
    run = jax.jit(arjax.mcmc.run_chains, static_argnums=(1, 3))
    positions, infos = run(jax.random.key(6), algorithm, starts, num_sweeps)
    draws = np.asarray(positions[:, -4:])  # the first sweeps forget the start
    assert 0.05 < float(np.mean(infos.acceptance_rate)) < 1.0
    assert np.all(draws[..., np.setdiff1d(np.arange(tok.num_positions), holes)] == template[
        np.setdiff1d(np.arange(tok.num_positions), holes)])
    index = ((draws[..., holes] - tok.element_start) * np.array([36, 6, 1])).sum(-1).ravel()
    empirical = np.bincount(index, minlength=len(exact)) / index.size
    total_variation = 0.5 * np.abs(empirical - exact).sum()
    assert total_variation < 0.05, total_variation
    assert 0.5 * np.abs(np.full_like(exact, 1 / len(exact)) - exact).sum() > 0.1  # the test can tell
