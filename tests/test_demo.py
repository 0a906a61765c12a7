"""``make demo`` (examples/demo.py) runs end to end, prints the exact F and writes its plot."""

import re

from test_examples import NUMBER, run_example, square_ising_free_energy_per_site


def test_demo_quick_prints_kaufmans_f_and_made_beats_mean_field(tmp_path):
    stdout = run_example("demo.py", tmp_path)
    exact = float(re.search(rf"exact F/N = {NUMBER}", stdout).group(1))
    assert abs(exact - square_ising_free_energy_per_site(4, 0.44)) < 1e-6
    row = rf"^(mean field|MADE)\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}"
    rows = {name: [float(v) for v in values] for name, *values in re.findall(row, stdout, re.M)}
    assert set(rows) == {"mean field", "MADE"}
    for f_var, stderr, _, rel in rows.values():
        assert f_var > exact - 4 * stderr  # an upper bound
        assert abs(rel - abs(f_var - exact) / abs(exact)) < 0.01 * rel + 1e-6  # printed to 3 digits
    assert rows["MADE"][3] < rows["mean field"][3] / 5
    assert (tmp_path / "demo.png").stat().st_size > 10_000
