"""Cross-checks the golden full-stream messages against an independent X.509 implementation (pyca/cryptography).

For every certificate in tests/golden/*.full.jsonl (leaf and chain), the DER in `as_der` is parsed by
`cryptography` and the fields our formatter produced are compared with what that library reads: serial, validity,
subject/issuer attributes, SAN DNS names and all_domains, basicConstraints, key identifiers, signature algorithm.
Exits non-zero with a list of mismatches.
"""

import base64
import datetime
import glob
import json
import os
import sys
import warnings

from cryptography import x509
from cryptography.x509.oid import ExtensionOID, NameOID

# The tiled corpus holds a certificate with a non-positive serial; we check it like any other.
warnings.filterwarnings("ignore", message="Parsed a serial number")

ATTRS = {
    "C": NameOID.COUNTRY_NAME,
    "CN": NameOID.COMMON_NAME,
    "L": NameOID.LOCALITY_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "emailAddress": NameOID.EMAIL_ADDRESS,
}
HASHES = {"sha1": "sha", "sha224": "sha224", "sha256": "sha256", "sha384": "sha384", "sha512": "sha512", "md5": "md5"}


def colon_hex(data):
    return ":".join(f"{b:02X}" for b in data)


def expected_name(name):
    out = {}
    for key, oid in ATTRS.items():
        values = name.get_attributes_for_oid(oid)
        out[key] = values[-1].value if values else None
    out["aggregated"] = "/" + "/".join(f"{k}={out[k]}" for k in ATTRS if out[k] is not None)
    return out


def extension(cert, oid):
    try:
        return cert.extensions.get_extension_for_oid(oid).value
    except x509.ExtensionNotFound:
        return None


def check_cert(obj, is_leaf, where, errors):
    der = base64.b64decode(obj["as_der"])
    cert = x509.load_der_x509_certificate(der)

    def expect(field, actual, wanted):
        if actual != wanted:
            errors.append(f"{where}: {field}: ours {actual!r}, cryptography {wanted!r}")

    serial = cert.serial_number
    expect("serial_number", obj["serial_number"], ("-" if serial < 0 else "") + format(abs(serial), "X"))
    expect("not_before", obj["not_before"], int(cert.not_valid_before_utc.timestamp()))
    expect("not_after", obj["not_after"], int(cert.not_valid_after_utc.timestamp()))
    expect("subject", obj["subject"], expected_name(cert.subject))
    expect("issuer", obj["issuer"], expected_name(cert.issuer))

    bc = extension(cert, ExtensionOID.BASIC_CONSTRAINTS)
    expect("is_ca", obj["is_ca"], bool(bc and bc.ca))
    if bc is not None:
        expect("basicConstraints", obj["extensions"].get("basicConstraints"), "CA:TRUE" if bc.ca else "CA:FALSE")
    ski = extension(cert, ExtensionOID.SUBJECT_KEY_IDENTIFIER)
    if ski is not None:
        expect("subjectKeyIdentifier", obj["extensions"].get("subjectKeyIdentifier"), colon_hex(ski.digest))
    aki = extension(cert, ExtensionOID.AUTHORITY_KEY_IDENTIFIER)
    if aki is not None and aki.key_identifier is not None:
        expect("authorityKeyIdentifier", obj["extensions"].get("authorityKeyIdentifier"),
               "keyid:" + colon_hex(aki.key_identifier) + "\n")

    san = extension(cert, ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    dns = san.get_values_for_type(x509.DNSName) if san is not None else []
    if san is not None:
        wanted = ", ".join(f"DNS:{d}" for d in reversed(dns)) if len(dns) == len(list(san)) else None
        if wanted is not None:
            expect("subjectAltName", obj["extensions"].get("subjectAltName"), wanted)
    if is_leaf:
        names = set(dns)
        cn = expected_name(cert.subject)["CN"]
        if cn is not None:
            names.add(cn)
        expect("all_domains", obj["all_domains"], sorted(names, key=lambda s: s.encode()))

    hash_alg = cert.signature_hash_algorithm
    key_alg = cert.signature_algorithm_oid._name
    if hash_alg is not None and hash_alg.name in HASHES:
        kind = "ecdsa" if "ecdsa" in key_alg.lower() else "dsa" if "dsa" in key_alg.lower() else "rsa"
        if "PSS" in key_alg.upper():
            kind = "rsassa-pss"
        expect("signature_algorithm", obj["signature_algorithm"],
               f"{HASHES[hash_alg.name] if kind != 'rsassa-pss' else hash_alg.name}, {kind}")


def main():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden")
    errors, checked = [], 0
    for path in sorted(glob.glob(os.path.join(root, "*.full.jsonl"))):
        with open(path, "rb") as f:
            for line_no, line in enumerate(f, 1):
                message = json.loads(line)
                data = message["data"]
                where = f"{os.path.basename(path)}:{line_no}"
                check_cert(data["leaf_cert"], True, where + " leaf", errors)
                for i, chain_cert in enumerate(data["chain"]):
                    check_cert(chain_cert, False, f"{where} chain[{i}]", errors)
                checked += 1 + len(data["chain"])
    for error in errors[:50]:
        print(error)
    print(f"cross-checked {checked} certificates, {len(errors)} mismatches")
    if checked == 0:
        print("no golden files found")
        return 1
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
