"""hubspec: a second implementation of the referral hub's wire protocol, hub.v1.

Written from SPEC.md (and the .proto files, README.md, ARCHITECTURE.md, deploy/isp/policy.toml)
only, never from the Rust source: the point is to show the specification is enough. Each
module names the SPEC.md sections it implements.

    common      bytes, hashes and the `field()` framing (§1, §11.2)
    grammar     the clear-field grammars (§3.1)
    keys        key ids, strict Ed25519, the key file (§1, §3.2, §3.3)
    directory   the partnership directory and keys in force (§4.1)
    signed_files  .sig files of the directory and the policy (§4.3)
    names       name folding, subject refs, link tokens (§5)
    protos      the protobuf schema compiled at run time: kinds, data categories, minimisation (§6.1, §6.2)
    policy      the policy file, its deadlines, and the decision (§4.2, §9)
    consent     consent records and the consent check (§13)
    risk        DASH checklists, bands, signed summaries and the risk check (§6.5)
    envelope    sealing (§6.3) and every receive check (§8)
    events      signed events and their kinds (§7, §10)
    ledger      ledger entries and their canonical hash (§11)
    merkle      RFC 9162 trees and proofs (§12.1-12.3)
    checkpoint  C2SP signed-note checkpoints and witness cosignatures (§12.4)
"""
