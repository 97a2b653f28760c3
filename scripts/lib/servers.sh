# Shared by scripts/test and the benchmarks: install what ferry's tests need, and start/stop real
# PostgreSQL and slapd servers on loopback in a scratch directory. Source it; don't run it.

FERRY_PACKAGES=(slapd ldap-utils postgresql libacl1-dev acl)

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

ferry_install_packages() {
  local missing=()
  command -v slapd >/dev/null 2>&1 || [ -x /usr/sbin/slapd ] || missing+=(slapd)
  command -v ldapsearch >/dev/null 2>&1 || missing+=(ldap-utils)
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
  [ -e /usr/include/sys/acl.h ] || missing+=(libacl1-dev)
  command -v getfacl >/dev/null 2>&1 || missing+=(acl)
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  /usr/bin/python3 -c "import samba.dcerpc.security" >/dev/null 2>&1 || missing+=(python3-samba)
  /usr/bin/python3 -c "import prometheus_client" >/dev/null 2>&1 || missing+=(python3-prometheus-client)
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
  command -v strace >/dev/null 2>&1 || missing+=(strace)
  # scripts/package and scripts/test-packages: dpkg-shlibdeps, objcopy, systemd-analyze, adduser.
  command -v dpkg-shlibdeps >/dev/null 2>&1 || missing+=(dpkg-dev)
  command -v objcopy >/dev/null 2>&1 || missing+=(binutils)
  command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
  command -v adduser >/dev/null 2>&1 || [ -x /usr/sbin/adduser ] || missing+=(adduser)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "==> installing: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# A free TCP port on 127.0.0.1.
ferry_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# ferry_start_postgres DIR → exports FERRY_TEST_DATABASE_URL
ferry_start_postgres() {
  local dir=$1 port bin user
  port=$(ferry_free_port)
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
  mkdir -p "$dir/pg/tls"
  # TLS: a throw-away CA signs a certificate for localhost and 127.0.0.1 (tests connect with
  # sslmode=verify-full against FERRY_TEST_PG_CA); a second CA signs nothing.
  (
    cd "$dir/pg/tls"
    for ca in ca other-ca; do
      openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=ferry test $ca" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
        -keyout "$ca.key" -out "$ca.pem" 2>/dev/null
    done
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
      -extfile server.ext -out server.crt 2>/dev/null
    chmod 600 server.key
  )
  if [ "$(id -u)" -eq 0 ]; then
    user=postgres
    chown -R postgres:postgres "$dir/pg"
    run_pg() { runuser -u postgres -- "$@"; }
  else
    user=$(id -un)
    run_pg() { "$@"; }
  fi
  run_pg "$bin/initdb" -D "$dir/pg/data" -U "$user" --auth=trust -E UTF8 --no-sync >"$dir/pg/initdb.log" 2>&1
  run_pg "$bin/pg_ctl" -D "$dir/pg/data" -l "$dir/pg/server.log" -w \
    -o "-p $port -k $dir/pg -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 -c ssl=on -c ssl_cert_file=$dir/pg/tls/server.crt -c ssl_key_file=$dir/pg/tls/server.key" \
    start >/dev/null
  run_pg "$bin/createdb" -h 127.0.0.1 -p "$port" -U "$user" ferry_test
  FERRY_PG_STOP="run_pg $bin/pg_ctl -D $dir/pg/data -m fast stop"
  export FERRY_TEST_DATABASE_URL="postgres://$user@127.0.0.1:$port/ferry_test"
  export FERRY_TEST_PG_CA="$dir/pg/tls/ca.pem" FERRY_TEST_PG_OTHER_CA="$dir/pg/tls/other-ca.pem"
  echo "==> PostgreSQL on 127.0.0.1:$port"
}

ferry_stop_postgres() {
  if [ -n "${FERRY_PG_STOP:-}" ]; then $FERRY_PG_STOP >/dev/null 2>&1 || true; fi
}

# ferry_start_slapd DIR → exports FERRY_TEST_LDAP_URL, FERRY_TEST_LDAP_PASSWORD, for LDAPS
# FERRY_TEST_LDAPS_URL (ldaps://localhost:PORT) and FERRY_TEST_LDAP_CA (the CA that signed the
# server's certificate, for DNS:localhost only: ldaps://127.0.0.1 fails verification on purpose),
# and FERRY_TEST_LDAPI_URL (ldapi://, the Unix socket DIR/ldap/ldapi).
# Two databases: dc=contoso,dc=test and dc=fabrikam,dc=test, root DNs cn=admin,<suffix>.
# FERRY_SLAPD_PRELOAD=file.ldif bulk-loads entries into dc=contoso,dc=test before the server starts.
ferry_start_slapd() {
  local dir=$1 port tls_port password=ferry-test-secret
  port=$(ferry_free_port)
  tls_port=$(ferry_free_port)
  mkdir -p "$dir/ldap/config" "$dir/ldap/contoso" "$dir/ldap/fabrikam" "$dir/ldap/tls"
  (
    cd "$dir/ldap/tls"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=ferry test LDAP CA" \
      -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
      -keyout ca.key -out ca.pem 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr 2>/dev/null
    printf 'subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
      -extfile server.ext -out server.crt 2>/dev/null
    chmod 600 server.key
  )
  {
    cat <<LDIF
dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: $dir/ldap/slapd.pid
olcSizeLimit: unlimited
olcTLSCACertificateFile: $dir/ldap/tls/ca.pem
olcTLSCertificateFile: $dir/ldap/tls/server.crt
olcTLSCertificateKeyFile: $dir/ldap/tls/server.key

dn: cn=module{0},cn=config
objectClass: olcModuleList
cn: module{0}
olcModulePath: /usr/lib/ldap
olcModuleLoad: back_mdb

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

LDIF
    for s in core cosine inetorgperson nis; do cat "/etc/ldap/schema/$s.ldif"; echo; done
    cat <<LDIF
dn: olcDatabase={-1}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {-1}frontend
olcSizeLimit: unlimited

dn: olcDatabase={0}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {0}config
olcAccess: {0}to * by * none

LDIF
    local n=1
    for org in contoso fabrikam; do
      cat <<LDIF
dn: olcDatabase={$n}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {$n}mdb
olcSuffix: dc=$org,dc=test
olcRootDN: cn=admin,dc=$org,dc=test
olcRootPW: $password
olcDbDirectory: $dir/ldap/$org
olcDbMaxSize: 4294967296
olcSizeLimit: unlimited
olcDbIndex: objectClass eq
olcDbIndex: entryUUID eq
olcDbIndex: uid,mail,cn eq
olcAccess: {0}to * by self write by users read by anonymous auth

LDIF
      n=$((n + 1))
    done
  } >"$dir/ldap/config.ldif"
  slapadd -n0 -F "$dir/ldap/config" -l "$dir/ldap/config.ldif" >/dev/null 2>"$dir/ldap/slapadd.log"
  for org in contoso fabrikam; do
    printf 'dn: dc=%s,dc=test\nobjectClass: dcObject\nobjectClass: organization\ndc: %s\no: %s\n' "$org" "$org" "$org" |
      slapadd -F "$dir/ldap/config" -b "dc=$org,dc=test" >/dev/null 2>>"$dir/ldap/slapadd.log"
  done
  if [ -n "${FERRY_SLAPD_PRELOAD:-}" ]; then
    slapadd -q -F "$dir/ldap/config" -b dc=contoso,dc=test -l "$FERRY_SLAPD_PRELOAD" >/dev/null 2>>"$dir/ldap/slapadd.log"
  fi
  local ldapi
  ldapi="ldapi://$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$dir/ldap/ldapi")"
  /usr/sbin/slapd -h "ldap://127.0.0.1:$port/ ldaps://127.0.0.1:$tls_port/ $ldapi" -F "$dir/ldap/config" 2>"$dir/ldap/slapd.log"
  local up=
  for _ in $(seq 50); do
    ldapsearch -x -H "ldap://127.0.0.1:$port" -b "" -s base >/dev/null 2>&1 && up=1 && break
    sleep 0.1
  done
  if [ -z "$up" ]; then
    echo "slapd did not answer on 127.0.0.1:$port; $dir/ldap/slapadd.log and $dir/ldap/slapd.log say:" >&2
    tail -n 20 "$dir/ldap/slapadd.log" "$dir/ldap/slapd.log" >&2 2>/dev/null
    return 1
  fi
  FERRY_SLAPD_PIDFILE="$dir/ldap/slapd.pid"
  export FERRY_TEST_LDAP_URL="ldap://127.0.0.1:$port" FERRY_TEST_LDAP_PASSWORD=$password
  export FERRY_TEST_LDAPS_URL="ldaps://localhost:$tls_port" FERRY_TEST_LDAP_CA="$dir/ldap/tls/ca.pem"
  export FERRY_TEST_LDAPI_URL=$ldapi
  echo "==> slapd on 127.0.0.1:$port (LDAPS on $tls_port)"
}

ferry_stop_slapd() {
  if [ -n "${FERRY_SLAPD_PIDFILE:-}" ] && [ -f "$FERRY_SLAPD_PIDFILE" ]; then
    kill "$(cat "$FERRY_SLAPD_PIDFILE")" 2>/dev/null || true
  fi
}
