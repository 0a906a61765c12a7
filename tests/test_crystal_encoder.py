"""The mixed token/continuous crystal encoding: round trips, densities over the truly free coordinates only,
exact normalisation (enumerated skeleton × quadrature), KV-cache decoding, and bad input."""

import collections

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import arjax
from arjax import crystal as ac
from arjax.crystal.encoder import CrystalEncoder
from arjax.crystal.errors import CrystalError
from arjax.crystal.net import CrystalTransformer
from arjax.families.layout import net_layout


def _net(encoder, key=0, scale=3.0):
    """A random net whose conditionals depend visibly on the prefix (weights scaled up)."""
    net = CrystalTransformer(encoder, d_model=16, num_heads=2, num_layers=1, key=jax.random.key(key))
    return jax.tree.map(lambda w: scale * w if isinstance(w, jax.Array) and w.ndim >= 2 else w, net)


def _position_log_probs(net, x, chunk=1024):
    """``ln p(x_i | x_<i)`` of every position of a batch ``x`` (grammar rows on token positions), in fixed chunks."""
    x = np.asarray(x, np.float32)
    pad = -len(x) % chunk
    padded = np.concatenate([x, np.repeat(x[:1], pad, axis=0)])
    parts = [np.asarray(_chunk_log_probs(net, jnp.asarray(padded[k : k + chunk])))
             for k in range(0, len(padded), chunk)]  # fmt: skip
    return np.concatenate(parts)[: len(x)].astype(np.float64)


@eqx.filter_jit
def _chunk_log_probs(net, x):
    layout, rule = net_layout(net), net.encoder.allowed

    def one(v):
        rows = jax.vmap(lambda i: rule(v, i))(jnp.arange(net.num_positions))
        return layout.log_probs(net(v), v, rows)

    return jax.vmap(one)(x)


# --- encode / decode ----------------------------------------------------------------------------


def test_sequence_layout_of_rocksalt_holds_group_sites_end_and_one_free_length():
    enc = CrystalEncoder(space_groups=[221, 225], elements=["Na", "Cl"], max_sites=3, max_atoms=8)
    x = enc.encode("225-b-Cl-a-Na-X-5.64")
    names = [enc.vocabulary[int(v)] for v in x[: enc.coordinate_start]]
    assert names == ["sg:225", "w:a", "el:Na", "w:b", "el:Cl", "X", "<pad>"]
    assert x[enc.coordinate_start : enc.lattice_start].tolist() == [0.0] * 9
    assert x[enc.lattice_start :].tolist() == [1.0, 1.0, 90.0, 90.0, 90.0, 5.64]  # b/a, c/a, angles, a
    assert enc.decode(x).to_string() == "225-a-Na-b-Cl-X-5.64"


@pytest.mark.parametrize(
    "text",
    [
        "225-a-Na-b-Cl-X-5.64",
        "225-f-Cu-0.3125-X-7.1",  # 32f x,x,x: one free coordinate
        "225-k-O-0.125-0.375-X-9.2",  # 96k x,x,z: two
        "221-a-Sr-b-Ti-c-O-X-3.905",
        "12-a-Li-i-O-0.25-0.5-X-5.1-2.9-6.4-104.5",  # monoclinic a, b, c, beta
        "2-i-Si-0.1-0.2-0.3-i-Si-0.6-0.7-0.8-X-4.1-4.3-4.7-81-82-83",  # triclinic: two sites on one letter
        "194-c-Ga-d-N-X-3.2-5.2",
    ],
)
def test_encode_decode_round_trip_is_exact(text):
    crystal = ac.parse_crystal(text)
    enc = CrystalEncoder.for_crystals([crystal])
    decoded = enc.decode(enc.encode(crystal))
    assert decoded.space_group == crystal.space_group
    assert [(s.letter, s.element) for s in decoded.sites] == [(s.letter, s.element) for s in crystal.sites]
    for s, t in zip(decoded.sites, crystal.sites):
        np.testing.assert_allclose(s.coordinates, t.coordinates, atol=1e-12)
    np.testing.assert_allclose(decoded.lattice, crystal.lattice, atol=1e-12)


@pytest.mark.parametrize("every", [pytest.param(1, marks=pytest.mark.slow), 40])
def test_shipped_perov5_crystals_round_trip(every):
    strings = [r["crystal"] for r in ac.load_perov5()][::every]
    enc = CrystalEncoder.for_crystals(strings)
    x = enc.encode_batch(strings)
    assert x.shape == (len(strings), enc.num_positions)
    decoded = [enc.decode(v).to_string() for v in x]
    originals = [ac.parse_crystal(s) for s in strings]
    assert decoded == [c.to_string() for c in originals]


@pytest.mark.parametrize(
    "g, letter, element, representative, num_free",
    [
        (225, "f", "Cu", ("x", "x", "x"), 1),
        (225, "k", "O", ("x", "x", "z"), 2),
        (221, "c", "O", ("0", "1/2", "1/2"), 0),
    ],
)
def test_site_density_is_over_its_truly_free_coordinates_and_atoms_sit_on_the_orbit(
    g, letter, element, representative, num_free
):
    assert ac.representative(g, letter) == representative
    enc = CrystalEncoder(space_groups=[221, 225], elements=["O", "Cu"], max_sites=2)
    net = _net(enc)
    start = enc.coordinate_start
    base = enc.encode(f"{g}-{letter}-{element}{'-0' * num_free}-X-4.0")
    # Quadrature over exactly the free coordinates: a uniform grid (spectrally accurate on the circle).
    n = 48
    axes = [np.arange(n) / n] * num_free
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, num_free) if axes else np.zeros((1, 0))
    xs = np.repeat(base[None], len(grid), axis=0)
    xs[:, start : start + num_free] = grid
    coordinate_lp = _position_log_probs(net, xs)[:, start : start + 3]
    assert np.all(coordinate_lp[:, num_free:] == 0.0)  # the inactive slots are point masses
    integral = np.mean(np.exp(coordinate_lp.sum(axis=1)))
    assert integral == pytest.approx(1.0, abs=2e-4)
    if num_free < 3:  # an inactive slot off its point has probability zero
        moved = base.copy()
        moved[start + num_free] = 0.3
        assert _position_log_probs(net, moved[None])[0, start + num_free] == -np.inf
    # Decoded atoms are exactly the orbit: spglib finds the same letter and free coordinates.
    values = (0.1875, 0.0625)[:num_free]
    x = base.copy()
    x[start : start + num_free] = values
    crystal = enc.decode(x)
    structure = ac.to_structure(crystal)
    assert len(structure.species) == ac.multiplicities(g)[ac.wyckoff_letters(g).index(letter)]
    found = ac.from_structure(structure.lattice, structure.frac_coords, structure.species)
    assert (found.space_group, [s.letter for s in found.sites]) == (g, [letter])
    assert sorted(ac.orbit(g, letter, found.sites[0].coordinates).tolist()) == sorted(structure.frac_coords.tolist())


@pytest.mark.slow  # cached = generic for mixed sequences is tested in test_continuous
def test_cached_sampling_equals_the_generic_path_and_samples_decode():
    enc = CrystalEncoder(space_groups=[2, 12, 194, 225], elements=["O", "Na", "Cl"], max_sites=2, max_atoms=24)
    net = _net(enc, scale=1.0)
    cached, lp_cached = arjax.sample_and_log_prob(net, jax.random.key(1), (32,), allowed=enc.allowed, cached=True)
    generic, lp_generic = arjax.sample_and_log_prob(net, jax.random.key(1), (32,), allowed=enc.allowed, cached=False)
    np.testing.assert_allclose(np.asarray(cached), np.asarray(generic), atol=1e-5)
    np.testing.assert_allclose(np.asarray(lp_cached), np.asarray(lp_generic), atol=1e-3)
    rescored = arjax.Autoregressive(net, allowed=enc.allowed).log_prob(cached)
    np.testing.assert_allclose(np.asarray(rescored), np.asarray(lp_cached), atol=1e-3)
    for x in np.asarray(cached):
        crystal = enc.decode(x)
        assert crystal.num_atoms <= 24
        assert min(crystal.lattice[:3]) > 0 and all(0 < v < 180 for v in crystal.lattice[3:])


# --- exact normalisation: enumerated skeleton × quadrature ---------------------------------------


def _skeletons(enc):
    """Every token prefix (group, letters, elements) the grammar allows, enumerated by brute force."""
    rule = jax.jit(enc.allowed)
    out = []

    def extend(prefix):
        i = len(prefix)
        if i == enc.coordinate_start:
            out.append(prefix)
            return
        x = np.zeros(enc.num_positions, np.float32)
        x[:i] = prefix
        for k in np.flatnonzero(np.asarray(rule(jnp.asarray(x), i))):
            extend(prefix + [float(k)])

    extend([])
    return out


def _quadrature(enc, skeleton):
    """Nodes and weights over the continuous slots a skeleton switches on (others at their off value)."""
    g = enc.space_groups[int(skeleton[0]) - enc.group_start]
    slots, nodes, weights = [], [], []
    for s in range(enc.max_sites):
        token = int(skeleton[1 + 2 * s])
        if not enc.letter_start <= token < enc.element_start:
            break
        for k in range(ac.num_free_coordinates(g)[token - enc.letter_start]):
            slots.append(enc.coordinate_start + 3 * s + k)
            nodes.append(np.arange(16) / 16)
            weights.append(np.full(16, 1 / 16))
    for j, name in ((0, "b"), (1, "c"), (5, "a")):
        if name in ac.lattice_parameter_names(g):
            u = np.linspace(-8, 8, 21)  # ln(b/a), ln(c/a), ln(a): the log-normal mixture is a Gaussian mixture of it
            slots.append(enc.lattice_start + j)
            nodes.append(np.exp(u))
            weights.append(np.full(u.size, u[1] - u[0]) * np.exp(u))
    x = np.zeros((1, enc.num_positions))
    x[:, : enc.coordinate_start] = skeleton
    x[:, enc.lattice_start :] = [1.0, 1.0, 90.0, 90.0, 90.0, 1.0]
    grid = np.stack(np.meshgrid(*nodes, indexing="ij"), -1).reshape(-1, len(slots))
    w = np.prod(np.stack(np.meshgrid(*weights, indexing="ij"), -1).reshape(-1, len(slots)), -1)
    x = np.repeat(x, len(grid), axis=0)
    x[:, slots] = grid
    return x, w


def test_probabilities_sum_to_one_over_skeletons_and_free_geometry_with_the_atom_cap():
    # 195 (P23): 1a, 1b, 3c, 3d fixed; 4e x,x,x (one free coordinate), 6f x,0,0 ...; cubic (a only).
    # The cap of 8 atoms allows e twice (its sites in element order) but no f beside e, and no 6f + 3c.
    enc = CrystalEncoder(space_groups=[195], elements=["Na", "Cl"], max_sites=2, max_atoms=8,
                         coordinate_components=2, lattice_components=2)  # fmt: skip
    skeletons = _skeletons(enc)
    letters = collections.Counter(tuple(enc.vocabulary[int(t)] for t in sk[1 : enc.coordinate_start : 2])
                                  for sk in skeletons)  # fmt: skip
    assert letters[("w:e", "w:e")] == 3 and letters[("w:a", "w:a")] == 0  # (Na, Na), (Na, Cl), (Cl, Cl)
    assert letters[("w:c", "w:f")] == 0 and letters[("w:b", "w:f")] == 4 and letters[("w:e", "w:f")] == 0
    assert _total_probability(_net(enc, scale=1.5), skeletons) == pytest.approx(1.0, abs=2e-3)


def test_element_cap_keeps_exactly_the_skeletons_with_few_enough_elements_and_they_sum_to_one():
    # 221, cap of 5 atoms: up to three sites on a, b, c, d (no free coordinates); at most 2 of 3 elements.
    options = dict(space_groups=[221], elements=["Na", "Cl", "K"], max_sites=3, max_atoms=5,
                   coordinate_components=2, lattice_components=2)  # fmt: skip
    enc = CrystalEncoder(**options, max_elements=2)
    every = _skeletons(CrystalEncoder(**options))
    distinct = [len({t for t in sk[2 : enc.coordinate_start : 2] if t >= enc.element_start}) for sk in every]
    assert max(distinct) == 3
    assert sorted(_skeletons(enc)) == sorted(sk for sk, n in zip(every, distinct) if n <= 2)
    assert _total_probability(_net(enc, scale=1.5), _skeletons(enc)) == pytest.approx(1.0, abs=2e-3)
    with pytest.raises(CrystalError, match="3 distinct elements, more than max_elements=2"):
        enc.encode("221-a-Na-b-Cl-c-K-X-3.0")
    for bad in (0, True, 2.0):
        with pytest.raises(ValueError, match="max_elements must be a positive int or None"):
            CrystalEncoder(**options, max_elements=bad)
        with pytest.raises(ValueError, match="max_elements must be a positive int or None"):
            ac.CrystalTokenizer(space_groups=[221], elements=["Na", "Cl", "K"], max_elements=bad)


@pytest.mark.slow
def test_probabilities_sum_to_one_with_two_groups_a_tetragonal_cell_and_repeated_free_letters():
    # 99 (P4mm): 1a, 1b (0,0,z / ½,½,z), 2c (½,0,z); a tetragonal cell (a, c). 221: cap 2 leaves 1a, 1b.
    enc = CrystalEncoder(space_groups=[99, 221], elements=["Na", "Cl"], max_sites=2, max_atoms=2,
                         coordinate_components=2, lattice_components=2)  # fmt: skip
    skeletons = _skeletons(enc)
    letters = collections.Counter(
        (int(sk[0]), tuple(enc.vocabulary[int(t)] for t in sk[1 : enc.coordinate_start : 2])) for sk in skeletons
    )
    g99, g221 = enc.group_start, enc.group_start + 1
    assert (g99, ("w:c", "X")) in letters and (g99, ("w:c", "w:a")) not in letters
    assert (g99, ("w:a", "w:a")) in letters and (g221, ("w:a", "w:a")) not in letters
    assert {w for (g, ws) in letters if g == g221 for w in ws} == {"w:a", "w:b", "X"}
    assert _total_probability(_net(enc, scale=1.5), skeletons) == pytest.approx(1.0, abs=2e-3)


def _total_probability(net, skeletons) -> float:
    total = 0.0
    for skeleton in skeletons:
        x, w = _quadrature(net.encoder, skeleton)
        total += float(np.sum(np.exp(_position_log_probs(net, x).sum(axis=1)) * w))
    return total


def test_log_prob_is_minus_infinity_outside_the_grammar():
    enc = CrystalEncoder(space_groups=[221, 225], elements=["Na", "Cl"], max_sites=3, max_atoms=12)
    p = arjax.Autoregressive(_net(enc), allowed=enc.allowed)
    good = enc.encode("221-a-Na-b-Cl-X-5.64")
    changes = {
        "a fixed letter repeats": (3, enc.letter_start),
        "over the atom cap (1 + 12 atoms of 221h)": (3, enc.letter_start + 7),
        "a coordinate on an inactive slot": (enc.coordinate_start, 0.5),
        "lattice b of a cubic cell": (enc.lattice_start, 3.0),
        "an element after the end": (6, enc.element_start),
        "elements out of order on one letter": None,
    }
    assert np.isfinite(float(p.log_prob(jnp.asarray(good, jnp.float32))))
    for reason, change in changes.items():
        if change is None:
            x = enc.encode("221-e-Cl-0.2-e-Na-0.3-X-5.64")
            assert np.isfinite(float(p.log_prob(jnp.asarray(x, jnp.float32))))
            x[[2, 4]] = x[[4, 2]]  # Cl before Na on the same letter
        else:
            x = good.copy()
            x[change[0]] = change[1]
        assert float(p.log_prob(jnp.asarray(x, jnp.float32))) == -np.inf, reason


# --- bad input ------------------------------------------------------------------------------------


_NACL_CIF = """data_NaCl
_cell_length_a 5.64
_cell_length_b 5.64
_cell_length_c 5.64
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
loop_
_symmetry_equiv_pos_as_xyz
'x, y, z'
'x+1/2, y+1/2, z'
'x+1/2, y, z+1/2'
'x, y+1/2, z+1/2'
loop_
_atom_site_type_symbol
_atom_site_label
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_occupancy
Na Na0 0 0 0 1
Cl Cl0 0.5 0.5 0.5 1
"""


def test_cif_with_centring_operations_gives_rocksalt():
    structure = ac.read_cif(_NACL_CIF, name="nacl")
    assert collections.Counter(structure.species) == {"Na": 4, "Cl": 4}
    assert ac.crystal_from_cif(_NACL_CIF, name="nacl").to_string() == "225-a-Na-b-Cl-X-5.64"


def test_bad_crystals_raise_errors_that_name_the_crystal_and_the_reason():
    with pytest.raises(CrystalError, match="crystal broken-1: unreadable CIF: no _cell_length_a"):
        ac.crystal_from_cif("data_x\n_cell_length_b 3\n", name="broken-1")
    flat = _NACL_CIF.replace("_cell_length_c 5.64", "_cell_length_c 0.0001")  # a cell of no volume
    with pytest.raises(CrystalError, match="crystal flat: spglib cannot symmetrise the structure"):
        ac.crystal_from_cif(flat, name="flat")
    enc = CrystalEncoder(space_groups=[225], elements=["Na", "Cl"], max_sites=2, max_atoms=8)
    with pytest.raises(CrystalError, match=r"crystal KCl: element 'K' of site 225a is not in the vocabulary"):
        enc.encode("225-a-K-b-Cl-X-6.3", name="KCl")
    with pytest.raises(CrystalError, match=r"crystal big: 32 atoms in the conventional cell, more than max_atoms=8"):
        enc.encode("225-f-Na-0.3-X-6.3", name="big")


def test_corpus_loader_skips_and_counts_bad_rows(tmp_path):
    import csv

    enc = CrystalEncoder(space_groups=[221, 225], elements=["Na", "Cl"], max_sites=2, max_atoms=8)
    rows = [
        ("ok", _NACL_CIF),
        ("unreadable", "this is not a CIF"),
        ("flat", _NACL_CIF.replace("_cell_length_c 5.64", "_cell_length_c 0.0001")),
        ("potassium", _NACL_CIF.replace("Na Na0", "K K0")),
        ("ok-again", _NACL_CIF.replace("5.64", "5.70")),
    ]
    path = tmp_path / "corpus.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["material_id", "cif"])
        writer.writerows(rows)
    corpus = ac.load_cif_corpus(path, check=lambda crystal, name: enc.encode(crystal, name=name))
    assert [r["name"] for r in corpus.records] == ["ok", "ok-again"]
    assert corpus.skip_counts() == {"unreadable CIF": 1, "cannot symmetrise": 1, "element outside the vocabulary": 1}
    assert [name for name, _, _ in corpus.skipped] == ["unreadable", "flat", "potassium"]
