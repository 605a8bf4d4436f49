"""Reader for H-Pokec, H2GB's heterogeneous Pokec social network (``H2GB/datasets/pokec_dataset.py``).

Files: SNAP's ``soc-pokec-profiles.txt.gz`` and ``soc-pokec-relationships.txt.gz``, which H2GB keeps
in ``<root>/Pokec/raw/``. Both are gzip'd tab-separated text without a header:

* profiles: ``user_id`` then the 58 fields of :data:`PROFILE_FIELDS` (``public`` ... ``more``), SNAP
  lines usually ending in a tab; ``null`` (any of pandas' missing spellings) marks a missing field;
* relationships: ``user_id<TAB>user_id``, one friendship link per line, ids 1-based.

As H2GB builds it:

* ``user`` nodes in ``user_id`` order (ids must run 1..N), label ``gender`` (0/1; missing -> -1);
* user features: ``public``, ``completion_percentage`` and ``AGE`` (0 read as 23, then missing as 0),
  z-scored (population std + 1e-9); one-hot of the region's main area (text before the first comma,
  missing -> ``"nan"``), categories sorted; then for each field from ``body`` to ``more`` a 0/1 flag
  "is filled in";
* for each of the 15 hobby fields in :data:`HOBBY_FIELDS`, a node type whose nodes are the distinct
  clubs linked in that field (``href="/klub/<name>"``) and an edge ``(user, lists, <field>)`` per link;
  H2GB numbers the clubs by Python set order, which changes from run to run, so here they are
  numbered in sorted name order;
* ``(user, has_friend, user)`` from the relationships file;
* split: a seeded random 50/25/25 of the users with a gender.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import HeteroData

from hgnn.data.formats.h2gb import (
    NA_VALUES,
    categories,
    check_ids,
    find_member,
    iter_blocks,
    iter_lines,
    one_hot,
    parse_float,
    set_masks,
    split_50_25_25,
    zscore,
)
from hgnn.data.source import Source
from hgnn.data.task import TaskSpec
from hgnn.errors import DataFormatError, UnknownNameError

TARGET = "user"
PROFILES, RELATIONSHIPS = "soc-pokec-profiles.txt.gz", "soc-pokec-relationships.txt.gz"
PROFILE_FIELDS = (
    "public", "completion_percentage", "gender", "region", "last_login", "registration", "AGE",
    "body", "I_am_working_in_field", "spoken_languages", "hobbies", "I_most_enjoy_good_food", "pets",
    "body_type", "my_eyesight", "eye_color", "hair_color", "hair_type",
    "completed_level_of_education", "favourite_color", "relation_to_smoking", "relation_to_alcohol",
    "sign_in_zodiac", "on_pokec_i_am_looking_for", "love_is_for_me", "relation_to_casual_sex",
    "my_partner_should_be", "marital_status", "children", "relation_to_children", "I_like_movies",
    "I_like_watching_movie", "I_like_music", "I_mostly_like_listening_to_music",
    "the_idea_of_good_evening", "I_like_specialties_from_kitchen", "fun", "I_am_going_to_concerts",
    "my_active_sports", "my_passive_sports", "profession", "I_like_books", "life_style", "music",
    "cars", "politics", "relationships", "art_culture", "hobbies_interests",
    "science_technologies", "computers_internet", "education", "sport", "movies", "travelling",
    "health", "companies_brands", "more",
)
HOBBY_FIELDS = PROFILE_FIELDS[PROFILE_FIELDS.index("life_style"):PROFILE_FIELDS.index("more")]
NUMERIC_FIELDS = ("public", "completion_percentage", "AGE")
TEXT_FIELDS = PROFILE_FIELDS[PROFILE_FIELDS.index("body"):]
_CLUB = re.compile(r'href="/klub/([^"]+)"')
_COL = {name: i + 1 for i, name in enumerate(PROFILE_FIELDS)}  # column 0 is user_id


def read_h2gb_pokec(path: str | Path, split_seed: int = 0, **options) -> tuple[HeteroData, TaskSpec]:
    """Read H-Pokec: users' gender, with friendships and 15 kinds of hobby club.

    Args:
        path: the folder (or zip) with the two SNAP files, directly or in ``raw/``.
        split_seed: seed of the random 50/25/25 split of the users with a gender.
    """
    if options:
        raise UnknownNameError(f"H-Pokec takes only 'split_seed' (got {sorted(options)})")
    src = Source(path)
    member = find_member(src, PROFILES)
    where = src.where(member)
    user_ids, numeric, gender, area, filled, clubs, lines = [], [], [], [], [], [], []
    for line_no, line in iter_lines(src, member):
        fields = line.split("\t")
        if len(fields) == len(PROFILE_FIELDS) + 2 and fields[-1] == "":
            fields.pop()  # SNAP's trailing tab
        if len(fields) != len(PROFILE_FIELDS) + 1:
            raise DataFormatError(where, f"expected user_id and {len(PROFILE_FIELDS)} tab-separated "
                                  f"fields, got {len(fields)} fields", line_no)
        try:
            user_ids.append(int(fields[0]))
        except ValueError:
            raise DataFormatError(where, f"user_id {fields[0]!r} is not an integer", line_no) from None
        lines.append(line_no)
        numeric.append([parse_float(fields[_COL[f]], where, line_no, f) for f in NUMERIC_FIELDS])
        sex = fields[_COL["gender"]].strip()
        if sex in NA_VALUES:
            gender.append(-1)
        elif sex in ("0", "1", "0.0", "1.0"):
            gender.append(int(float(sex)))
        else:
            raise DataFormatError(where, f"gender {sex!r} is not 0, 1 or missing", line_no)
        region = fields[_COL["region"]]
        area.append("nan" if region.strip() in NA_VALUES else region.split(",")[0])
        filled.append(bytes(fields[_COL[f]].strip() not in NA_VALUES for f in TEXT_FIELDS))
        clubs.append([_CLUB.findall(fields[_COL[f]]) if fields[_COL[f]].strip() not in NA_VALUES
                      else [] for f in HOBBY_FIELDS])
    n = len(user_ids)
    order = check_ids(user_ids, lines, 1, where, "user_id")

    nums = np.asarray(numeric, dtype=np.float64).reshape(n, len(NUMERIC_FIELDS))[order]
    age = nums[:, NUMERIC_FIELDS.index("AGE")]
    age[age == 0] = 23.0
    nums = np.nan_to_num(nums, nan=0.0)
    areas = [area[i] for i in order]
    text = np.frombuffer(b"".join(filled), dtype=np.uint8).reshape(n, len(TEXT_FIELDS))[order]
    x = np.concatenate([zscore(nums), one_hot(areas, categories(areas)),
                        text.astype(np.float32)], axis=1)

    data = HeteroData()
    user = data[TARGET]
    user.x = torch.from_numpy(x.astype(np.float32))
    user.num_nodes = n
    y = np.asarray(gender, dtype=np.int64)[order]
    user.y = torch.from_numpy(y)
    data[TARGET, "has_friend", TARGET].edge_index = _friends(src, n)
    for k, field in enumerate(HOBBY_FIELDS):
        names = sorted({c for i in range(n) for c in clubs[i][k]})
        club_id = {c: j for j, c in enumerate(names)}
        rows, cols = [], []
        for row, i in enumerate(order):
            for c in clubs[i][k]:
                rows.append(row)
                cols.append(club_id[c])
        data[TARGET, "lists", field].edge_index = torch.tensor([rows, cols], dtype=torch.long
                                                               ).view(2, -1)
        data[field].num_nodes = len(names)
    train, val, test = split_50_25_25(np.flatnonzero(y >= 0), split_seed)
    set_masks(user, n, train, val, test)
    task = TaskSpec(target=TARGET, num_classes=2, metrics=("accuracy",), split="random",
                    split_seed=int(split_seed), featureless=HOBBY_FIELDS)
    return data, task


def _friends(src: Source, n: int) -> torch.Tensor:
    member = find_member(src, RELATIONSHIPS)
    where = src.where(member)
    parts = []
    for first_line, block in iter_blocks(src, member):
        numbered = [(first_line + k, line.split()) for k, line in enumerate(block.split(b"\n")[:-1])]
        numbered = [(line_no, fields) for line_no, fields in numbered if fields]  # pandas skips blanks
        rows = [fields for _, fields in numbered]
        if not rows:
            continue
        try:
            pairs = np.asarray(rows, dtype=np.int64).reshape(len(rows), -1)
        except (ValueError, OverflowError):
            pairs = None
        if pairs is None or pairs.shape[1] != 2:
            for line_no, fields in numbered:
                if len(fields) != 2:
                    raise DataFormatError(where, f"expected 2 tab-separated user ids, got "
                                          f"{len(fields)} fields", line_no)
                for field in fields:
                    try:
                        int(field)
                    except ValueError:
                        raise DataFormatError(where, f"user id {field.decode(errors='replace')!r} "
                                              "is not an integer", line_no) from None
            raise DataFormatError(where, "could not be parsed as pairs of user ids", first_line)
        bad = np.flatnonzero(((pairs < 1) | (pairs > n)).any(axis=1))
        if bad.size:
            raise DataFormatError(where, f"user id out of range [1, {n}] in "
                                  f"{pairs[bad[0]].tolist()}", numbered[int(bad[0])][0])
        parts.append(pairs - 1)
    pairs = np.concatenate(parts) if parts else np.zeros((0, 2), dtype=np.int64)
    return torch.from_numpy(np.ascontiguousarray(pairs.T))
