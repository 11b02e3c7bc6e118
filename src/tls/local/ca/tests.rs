//! The CA and its leaves, checked the way a strict client checks them: rustls's webpki
//! verifier with only the exported CA as root (it also refuses a CA-flagged leaf).

use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{RootCertStore, SignatureAlgorithm};

use super::*;
use crate::tls::provider;

fn verifier(ca_pem: &str) -> Arc<WebPkiServerVerifier> {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.expect("CA PEM")).expect("CA as root");
    }
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .expect("verifier")
}

fn verify(ca_pem: &str, chain_pem: &str, name: &str) -> Result<(), rustls::Error> {
    let chain: Vec<_> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .expect("chain PEM");
    let name = ServerName::try_from(name.to_string()).expect("server name");
    verifier(ca_pem)
        .verify_server_cert(&chain[0], &chain[1..], &name, &[], UnixTime::now())
        .map(|_| ())
}

fn key_algorithm(key_pem: &str) -> SignatureAlgorithm {
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("key PEM");
    provider()
        .key_provider
        .load_private_key(key)
        .expect("ring loads the key")
        .algorithm()
}

#[test]
fn leaves_verify_against_the_ca_for_every_name() {
    let extra = vec!["nas.local".to_string(), "192.168.1.10".to_string()];
    let cases = [
        (KeyType::Rsa, SignatureAlgorithm::RSA),
        (KeyType::Ecdsa, SignatureAlgorithm::ECDSA),
    ];
    for (key_type, algorithm) in cases {
        let ca = Ca::generate(key_type).expect("CA");
        assert_eq!(key_algorithm(&ca.key_pem()), algorithm, "{key_type:?} CA");
        let (chain, key) = ca.issue(key_type, "gw.example", &extra).expect("leaf");
        assert_eq!(key_algorithm(&key), algorithm, "{key_type:?} leaf");
        for name in ["localhost", "127.0.0.1", "::1", "gw.example", "nas.local"] {
            verify(&ca.cert_pem(), &chain, name)
                .unwrap_or_else(|e| panic!("{key_type:?} leaf for {name}: {e}"));
        }
        assert!(
            verify(&ca.cert_pem(), &chain, "elsewhere.example").is_err(),
            "a name not on the leaf"
        );
    }
}

#[test]
fn a_ca_reloaded_from_its_key_signs_leaves_the_stored_certificate_verifies() {
    for key_type in [KeyType::Rsa, KeyType::Ecdsa] {
        let ca = Ca::generate(key_type).expect("CA");
        let stored_cert = ca.cert_pem();
        let reloaded = Ca::from_key_pem(&ca.key_pem()).expect("reload");
        let (chain, _) = reloaded.issue(key_type, "gw.example", &[]).expect("leaf");
        verify(&stored_cert, &chain, "localhost")
            .unwrap_or_else(|e| panic!("{key_type:?}: renewed leaf vs stored CA: {e}"));
        // And another CA does not verify it.
        let other = Ca::generate(KeyType::Ecdsa).expect("other CA");
        assert!(verify(&other.cert_pem(), &chain, "localhost").is_err());
    }
}

#[test]
fn the_key_pem_never_appears_in_the_chain() {
    let ca = Ca::generate(KeyType::Ecdsa).expect("CA");
    let (chain, key) = ca.issue(KeyType::Ecdsa, "gw.example", &[]).expect("leaf");
    assert!(!chain.contains("PRIVATE KEY"));
    assert!(key.contains("BEGIN PRIVATE KEY"));
    assert!(!ca.cert_pem().contains("PRIVATE KEY"));
}
