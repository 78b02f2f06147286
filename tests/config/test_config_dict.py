"""ConfigDict: attribute access, conversion of nested dicts, errors, copies."""

from __future__ import annotations

import copy
import pickle

import pytest

from vistra.config import ConfigDict


def test_attribute_and_item_access_at_every_depth():
    d = ConfigDict(model=dict(backbone=dict(depth=50)))
    assert d.model.backbone.depth == 50
    assert d["model"]["backbone"]["depth"] == 50
    d.model.backbone.depth = 101
    assert d["model"]["backbone"]["depth"] == 101
    d.model.neck = dict(type="GAP")
    assert isinstance(d.model.neck, ConfigDict)
    assert d.model.neck.type == "GAP"
    del d.model.neck
    assert "neck" not in d.model


def test_dicts_inside_lists_and_tuples_become_configdicts_and_containers_keep_type():
    d = ConfigDict(pipeline=[dict(type="Load")], scales=(dict(s=1), 2))
    assert isinstance(d.pipeline, list) and d.pipeline[0].type == "Load"
    assert isinstance(d.scales, tuple) and d.scales[0].s == 1
    d["later"] = [dict(a=1)]
    assert d.later[0].a == 1


def test_missing_attribute_names_the_key_and_suggests_close_ones():
    d = ConfigDict(depth=50, out_indices=(3,))
    with pytest.raises(AttributeError, match=r"'depht'.*did you mean 'depth'"):
        _ = d.depht
    assert not hasattr(d, "nothing_like_it")


def test_missing_item_is_a_keyerror_and_no_key_is_created():
    d = ConfigDict()
    with pytest.raises(KeyError):
        _ = d["x"]
    with pytest.raises(AttributeError):
        d.x.y = 1
    assert d == {}


def test_update_is_recursive():
    d = ConfigDict(a=dict(b=1, c=2))
    d.update(a=dict(b=5), z=1)
    assert d == {"a": {"b": 5, "c": 2}, "z": 1}


def test_to_dict_gives_plain_dicts_everywhere():
    d = ConfigDict(a=dict(b=[dict(c=1)], t=(dict(e=2),)))
    plain = d.to_dict()
    assert type(plain) is dict and type(plain["a"]) is dict
    assert type(plain["a"]["b"][0]) is dict and type(plain["a"]["t"]) is tuple
    assert type(plain["a"]["t"][0]) is dict


def test_copy_is_shallow_deepcopy_and_pickle_are_independent():
    d = ConfigDict(a=dict(b=1))
    shallow = d.copy()
    assert isinstance(shallow, ConfigDict) and shallow.a is d.a
    deep = copy.deepcopy(d)
    deep.a.b = 2
    assert d.a.b == 1 and isinstance(deep.a, ConfigDict)
    restored = pickle.loads(pickle.dumps(d))
    assert restored == d and isinstance(restored.a, ConfigDict)
