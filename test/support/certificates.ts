import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** A certificate and its private key, as PEM files. */
export interface CertificateFiles {
  certFile: string
  keyFile: string
}

const ecKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1']

/**
 * Certificates made with `openssl` in a temporary folder, for tests that need TLS both ways: certificate
 * authorities, and server and client certificates they sign. `remove()` deletes the folder.
 */
export class TestCertificates {
  readonly dir = mkdtempSync(join(tmpdir(), 'cif-syncer-tls-'))
  #made = 0

  /** A certificate authority of its own (self-signed, allowed to sign certificates). */
  authority(name: string): CertificateFiles {
    const files = this.#files(name)
    this.#openssl([
      ...['req', '-x509', ...ecKey, '-subj', `/CN=${name}`],
      ...['-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'],
      ...['-keyout', files.keyFile, '-out', files.certFile]
    ])
    return files
  }

  /** A certificate for `commonName` signed by `authority`, good for a server on 127.0.0.1 and for a client. */
  issue(authority: CertificateFiles, commonName: string): CertificateFiles {
    const files = this.#files(commonName)
    this.#openssl([
      ...['req', '-x509', '-CA', authority.certFile, '-CAkey', authority.keyFile, ...ecKey, '-subj', `/CN=${commonName}`],
      ...['-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost', '-addext', 'extendedKeyUsage=serverAuth,clientAuth'],
      ...['-keyout', files.keyFile, '-out', files.certFile]
    ])
    return files
  }

  /** The PEM of a file made here. */
  read(file: string): Buffer {
    return readFileSync(file)
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true })
  }

  #files(name: string): CertificateFiles {
    // Numbered: two certificates may carry the same name.
    const file = `${++this.#made}-${name}`
    return { certFile: join(this.dir, `${file}.pem`), keyFile: join(this.dir, `${file}.key`) }
  }

  #openssl(args: string[]): void {
    execFileSync('openssl', args, { stdio: 'ignore' })
  }
}
