"""The client's copy of the signature contract must equal the exporter's, name for name."""

import sd_export.contract as original

import sd_client.contract as copy


def _public_constants(module):
    return {name: value for name, value in vars(module).items() if name.isupper() and not name.startswith("_")}


def test_every_contract_constant_has_the_same_value_in_the_client():
    exported = _public_constants(original)
    client = _public_constants(copy)
    assert exported, "sd_export.contract has no constants?"
    missing = sorted(set(exported) - set(client))
    assert not missing, f"sd_client.contract lacks {missing}"
    differing = {name: (exported[name], client[name]) for name in exported if exported[name] != client[name]}
    assert not differing


def test_signatures_are_equal():
    assert copy.SIGNATURES == original.SIGNATURES


def test_the_client_copy_adds_no_constants_of_its_own():
    # a constant only the client has would be a second source of truth for a contract value
    assert set(_public_constants(copy)) == set(_public_constants(original))
