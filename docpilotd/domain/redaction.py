"""Redaction: passwords, tokens and keys replaced by a marker before a session reaches any file.

A `Redactor` is an ordered list of compiled rules. `text(s)` applies every rule once, in order,
and returns the text with each secret replaced by `MARKER` (`[REDACTED]`). A rule whose regex has
named groups starting with `secret` (`secret`, `secret2`, ...) replaces only those groups, so the
reader keeps the context (`--password=[REDACTED]`, `Authorization: Bearer [REDACTED]`,
`postgres://app:[REDACTED]@db`); a rule without such a group replaces its whole match (a token
recognised by its shape, `ghp_...`, `AKIA...`); a rule with a `finder` (the shell-aware one) returns
its spans itself. The defaults know:

- the token formats providers document (`_TOKEN_SHAPES`: AWS, GitHub, GitLab's 14 prefixes, Slack,
  Stripe, Google, npm, PyPI, OpenAI, Anthropic, Hugging Face, Vault, DigitalOcean, Sentry, Shopify,
  PlanetScale, Azure, JWTs plain and base64-wrapped, and some 60 more), whole tokens replaced;
- assignments to a secret's name in every common syntax (shell, env files, YAML, JSON, TOML, INI,
  Go `:=` and `var x string =`, JS, PHP `.=` and `=>`, Ruby, Java properties and `setProperty`,
  XML elements, HCL, make `?=`/`::=`/`+=`), options that say so (`--password x`, `--account-key x`),
  headers, URLs with credentials, private key blocks;
- the options of common tools that carry a secret (`_TOOLS`: `docker login -p`, `htpasswd -b`,
  `vault login TOKEN`, `ssh-keygen -P/-N`, `7z -pX`, `smbclient -U user%pw`, `openssl -passin
  pass:x`, ...), read the way the shell reads the command (quotes and `$(...)` respected).

The config file adds regexes of the same kind (`redact_patterns`), and `docpilot redact` adds one for
the rest of the daemon's run; `allow` patterns name text that is never replaced (a secret found
inside one of their matches is kept: a user's false positives). The user's patterns are compiled by
RE2 (linear_regex.LinearPattern): no pattern can make redaction slow, and one that needs what RE2
lacks (lookarounds, backreferences) is refused with a `PatternError` that says so.

Pure: no files, clocks or sockets. Invariants: a redactor never raises on any text (its regexes
compile once, here, and a `PatternError` names the bad one); `session()` and `change()` touch only
free text (descriptions, commands, output, annotations, event details, metadata values), never
ids, timestamps, types or numbers, so a redacted session is still valid and replays the same way;
they return the input object itself when nothing matched, and a new object otherwise (the input
is never mutated: the daemon may be reading it in another thread); redacting a redacted text
changes nothing and counts nothing. Never damage a command: only a secret's own span is replaced
(never the name, operator or quotes around it), the count is the number of spans really replaced,
and a value that is a variable reference (`$X`, `${X}`, `%X%`), a command substitution (`$(...)`,
backticks), a template placeholder (`{{ x }}`, `${{ x }}`, `%(x)s`, `<x>`), a URL without
credentials, a literal (`null`, `true`, a small number), code (`os.getenv(...)`, `settings.API_KEY`)
or an obvious placeholder is not a secret. Cost: one RE2 pass over the text (`linear_regex.Gate`)
tells which rules may match it (each rule's gate is its own regex widened to what RE2 reads, so a
gate never hides a match); only those run, each built-in regex in linear time on any input
(bounded or possessive repetitions, literal first), and the shell reader reads each command once.
An ordinary command costs some 2-10 microseconds, a megabyte on one line some 2-10 ms.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, TypeVar

import msgspec

from . import changes
from .linear_regex import Gate, LinearPattern, LinearPatternError, shadow
from .model import Annotation, CommandEntry, ErrorState, Session, SessionEvent, SessionMetadata

MARKER = "[REDACTED]"
_T = TypeVar("_T")

# What a value may not start with, or be, to count as a secret (never damage a command): an option,
# an operator or a redirection; a variable reference or a command substitution ($X, ${X}, $(...),
# `...`, %X%); a template placeholder ({{ ... }}, ${{ ... }}, %(x)s, #{...}, ((x)), <x>, <%= %>);
# a YAML tag; a URL without credentials (those with credentials have their own rule); a literal
# (none, null, true, ...); a small number (a count or a length); an obvious placeholder (YOUR_KEY,
# xxx, ***, ...); code that reads the secret from elsewhere (os.getenv(...), settings.API_KEY,
# X25519.secret_length); the marker itself (redacting twice changes nothing).
_END = r"""(?![^\s'";,)}\]])"""
_NOT_SECRET_QUOTED = (
    r"(?![-=:<>!$`%&|]|#\{|\{\{|\(\(|\[(?i:redacted)\]"
    r"|(?i:[a-z][a-z0-9+.\-]{0,20}+://(?![^\s/@'\"]*+@))"
    r"|(?i:your[_\-]|x{3}|\*{3}|\.{3}|changeme\b|placeholder|secret_?here))"
)
# Unquoted, a value is not a secret either when it is a literal, a small number, a call or an index
# (os.getenv(...), ENV["X"]) or the name of another secret (self.password = password). (An attribute,
# settings.API_KEY, is told apart by its case: see _CODE_ATTRIBUTE.)
_NOT_SECRET = (
    _NOT_SECRET_QUOTED
    + r"(?!(?i:(?:none|null|nil|true|false|undefined|~|\d{1,5}+))" + _END
    + r"|[A-Za-z_][\w$]{0,64}+(?:\.[A-Za-z_][\w$]{0,64}+){0,8}+[(\[]"
    + r"|(?i:(?:[a-z]{1,16}+_){0,4}+(?:passw(?:or)?d|secret|token|api_?key)s?(?:_[a-z]{1,16}+){0,4}+)" + _END + ")"
)
# A value as a shell or a config file writes it: quoted, or up to whitespace or a character the shell
# reads as syntax (an operator, a quote, a backtick, a redirection, a parenthesis: never replaced, so
# a redacted command keeps its structure and redacting it again changes nothing).
_VALUE = (
    rf"""(?:"{_NOT_SECRET_QUOTED}(?P<secret_dq>[^"\n]++)"|'{_NOT_SECRET_QUOTED}(?P<secret_sq>[^'\n]++)'"""
    rf"""|(?!["'])(?!string\b){_NOT_SECRET}(?P<secret>[^\s'";&|`<>()]++))"""
)
# A name that says "this is a secret" (PGPASSWORD, GITHUB_TOKEN, AWS_SECRET_ACCESS_KEY, db_password,
# apiToken): the match starts at the keyword (a literal, found fast) and takes the rest of the name
# possessively.
_STRONG_NAMES = (r"passw(?:or)?d", "passphrase", r"secret(?:[_\-]?key)?", "token", r"api[_\-]?key", r"access[_\-]?key",
                 r"account[_\-]?key", r"private[_\-]?key", "credential")
_KEYWORD = (
    rf"(?:(?:{'|'.join(_STRONG_NAMES)})s?"
    r"|(?<![a-z0-9])pass|mysql_pwd)(?![a-z0-9])"  # a whole part of the name: not TOKENIZERS, BYPASS
)
# The same keyword as alternatives that each start with a literal: a rule starting with one of them
# is found by a fast literal search, where the alternation makes the regex engine try every
# position (see Rule.parts).
_KEYWORD_PARTS = (
    *(rf"{name}s?(?![a-z0-9])" for name in _STRONG_NAMES),
    r"pass(?<![a-z0-9]pass)(?![a-z0-9])", r"mysql_pwd(?![a-z0-9])",
)
# The rest of the name, which must not say it names something else than the secret itself
# (PASSWORD_FILE=/path, token_url, password_hash, secret_name, token_type, max_length, access_key_id).
_NAME_REST = (
    r"[a-z0-9_.\-]{0,64}+(?<!file)(?<!path)(?<!dir)(?<!hash)(?<!url)(?<!uri)(?<!endpoint)(?<!name)(?<!type)"
    r"(?<!length)(?<!len)(?<!count)(?<!version)(?<!policy)(?<!key_id)(?<!keyid)(?<!field)(?<!store)(?<!method)"
    r"(?<!mode)(?<!provider)(?<!scheme)"
)
# An unquoted value assigned to a secret's name that is an attribute in code, not a password:
# X25519.secret_length, settings.API_KEY, process.env.GITHUB_TOKEN (a last part in lower_snake or
# UPPER_SNAKE case; `Sup3r.Secret` stays a secret). Checked on the text as written.
_CODE_ATTRIBUTE = re.compile(r"(?:[A-Za-z_]\w{0,64}+\.){1,8}+(?:[a-z_][a-z0-9_]{0,64}+|[A-Z_][A-Z0-9_]{0,64}+)")


def _is_code_attribute(text: str, first: int, last: int) -> bool:
    """An unquoted value that is an attribute in code (see _CODE_ATTRIBUTE)."""
    return text[first - 1 : first] not in ("'", '"') and _CODE_ATTRIBUTE.fullmatch(text, first, last) is not None


# What a random-looking value may still be without being a secret: a path, a version, a UUID, a
# number, a word, words joined by dashes or dots (a name: oauth2-device-flow, en_US.UTF-8).
_NOT_RANDOM = re.compile(
    r"[~.]?/[\w./\-]*+|v?\d++(?:\.\d++)++[\w.\-+]*+"
    r"|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[\d.,_]++"
    r"|[a-zA-Z]++|[a-zA-Z][a-zA-Z0-9]{0,11}+(?:[-_. ][a-zA-Z][a-zA-Z0-9]{0,11}+)++"
)


def _not_random(text: str, first: int, last: int) -> bool:
    """Too short, too regular or shaped like something else to be a secret by its looks alone: at
    least 16 characters of two kinds or more (letters, digits, others) and 3.5 bits of entropy per
    character make a value random enough."""
    value = text[first:last]
    if len(value) < 16 or len(value) > 4096 or _NOT_RANDOM.fullmatch(value):
        return True
    kinds = (any(c.isalpha() for c in value), any(c.isdigit() for c in value), any(not c.isalnum() for c in value))
    if sum(kinds) < 2:
        return True
    counts: dict[str, int] = {}
    for c in value:
        counts[c] = counts.get(c, 0) + 1
    entropy = -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())
    return entropy < 3.5
# Every assignment syntax: = := ::= ?= += .= != => and : (YAML, JSON, Ruby, properties), after an
# optional closing quote or bracket (ENV["X_TOKEN"] =, $cfg['password'] =) or a Go type (var x string =).
_ASSIGN = r"""["'\]]{0,3}+(?:[ \t]++string)?[ \t]*+(?:[:?+.!]?=(?![=~])|::=|=>|:(?![:=/]))[ \t]*+"""
# Names that may, or may not, hold a secret: their values are taken only when random enough.
_WEAK_NAMES = ("auth", "key", "sig", "signature", r"signing[_\-]?key", "hmac", "salt", "seed", "creds?", "pw", "pin",
               "otp", "session", "cookie", "license", "webhook", r"encryption[_\-]?key", r"master[_\-]?key", "jwt")
_WEAK_KEYWORD = rf"(?<![a-z0-9])(?:{'|'.join(_WEAK_NAMES)})(?![a-z0-9])"


def _literal_first(name: str) -> str:
    """A weak name as a part of _WEAK_KEYWORD that starts with its literal letters (the check that
    no letter or digit comes before them follows them: `cred(?<![a-z0-9]cred)s?`)."""
    lead = re.match(r"[a-z]*", name).group(0)  # type: ignore[union-attr]
    if name[len(lead) : len(lead) + 1] in ("?", "*", "+", "{"):
        lead = lead[:-1]  # `creds?`: the quantifier is the last letter's
    return rf"{lead}(?<![a-z0-9]{lead}){name[len(lead):]}(?![a-z0-9])"


_WEAK_KEYWORD_PARTS = tuple(_literal_first(name) for name in _WEAK_NAMES)
_DB_CLIENTS = r"(?:mysql|mysqldump|mysqladmin|mysqlimport|mysqlshow|mysqlcheck|mysqlpump|mysqlsh|mariadb(?:-[a-z]+)?)"
# Not a reference: what follows an option that takes a secret glued or quoted.
_NOT_REF = r"(?![$`])"


def _args(program: str) -> str:
    """Between a program's name and one of its options: the rest of that command, within reason
    (never past the program's next mention, so every character is looked at once)."""
    return rf"(?:(?!{program})[^\n;|&]){{0,300}}?[ \t]"


_WORD_END = r"(?![A-Za-z0-9_])"


def _shape(literals: Sequence[str], body: str, end: str) -> str:
    """A token recognised by its shape: one of `literals` (found fast: the regex starts with it), not
    inside a longer word, then `body`, then not followed by more of the token."""
    heads = "|".join(re.escape(lit) + rf"(?<![A-Za-z0-9_]{'.' * len(lit)})" for lit in literals)
    return rf"(?:{heads}){body}{end}"


# Provider token formats, as the providers document them (and public scanners list them):
# (name, literal prefixes, what follows the prefix). The whole token is replaced.
_TOKEN_SHAPES: tuple[tuple[str, tuple[str, ...], str, str], ...] = (
    ("aws_access_key_id", ("AKIA", "ASIA", "ABIA", "ACCA", "AGPA", "AIDA", "AROA", "AIPA", "ANPA", "ANVA", "APKA"),
     r"[A-Z0-9]{16}", _WORD_END),
    ("github_token", ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"), r"[A-Za-z0-9]{36,255}+", _WORD_END),
    ("github_pat", ("github_pat_",), r"[A-Za-z0-9_]{22,255}+", _WORD_END),
    ("gitlab_token", ("glpat-", "glptt-", "gldt-", "glrt-", "glrtr-", "glcbt-", "glffct-", "glft-", "glimt-",
                      "glagent-", "gloas-", "glsoat-", "glswt-", "glwt-", "GR1348941"), r"[\w\-]{20,300}+", _WORD_END),
    ("slack_token", ("xoxb-", "xoxp-", "xoxa-", "xoxe-", "xoxo-", "xoxs-", "xoxr-", "xoxe.xoxp-"), r"[\w\-]{10,}+", _WORD_END),
    ("slack_app_token", ("xapp-",), r"\d-[A-Za-z0-9\-]{10,}+", _WORD_END),
    ("stripe_key", ("sk_live_", "sk_test_", "rk_live_", "rk_test_", "whsec_"), r"[A-Za-z0-9]{16,}+", _WORD_END),
    ("google_api_key", ("AIza",), r"[\w\-]{35}", _WORD_END),
    ("google_oauth_secret", ("GOCSPX-",), r"[\w\-]{28}", _WORD_END),
    ("google_oauth_token", ("ya29.",), r"[\w\-.]{20,}+", _WORD_END),
    ("google_refresh_token", ("1//0",), r"[\w\-]{40,}+", _WORD_END),
    ("npm_token", ("npm_",), r"[A-Za-z0-9]{36}", _WORD_END),
    ("pypi_token", ("pypi-AgEIcHlwaS5vcmc",), r"[\w\-]{50,}+", _WORD_END),
    ("openai_style_key", ("sk-",), r"(?:proj-|svcacct-|admin-|ant-(?:api|admin)\d\d-)?[\w\-]{20,}+", _WORD_END),
    ("jwt", ("eyJ",), r"[\w\-]{8,}+\.eyJ[\w\-]{8,}+\.[\w\-]{8,}+", _WORD_END),
    ("jwt_base64", ("ZXlK",), r"[A-Za-z0-9+/]{40,}+={0,2}+", r"(?![A-Za-z0-9_=])"),
    ("huggingface_token", ("hf_", "api_org_"), r"[A-Za-z0-9]{30,40}+", _WORD_END),
    ("vault_token", ("hvs.", "hvb.", "hvr."), r"[\w\-]{24,}+", _WORD_END),
    ("vault_legacy_token", ("s.",), r"[A-Za-z0-9]{24}", _WORD_END),
    ("digitalocean_token", ("dop_v1_", "doo_v1_", "dor_v1_"), r"[a-f0-9]{64}", _WORD_END),
    ("sentry_token", ("sntrys_", "sntryu_"), r"[\w=+/\-]{40,}+", _WORD_END),
    ("shopify_token", ("shpat_", "shpca_", "shppa_", "shpss_"), r"[a-fA-F0-9]{32}", _WORD_END),
    ("planetscale_token", ("pscale_tkn_", "pscale_pw_", "pscale_oauth_"), r"[\w=.\-]{32,64}+", _WORD_END),
    ("databricks_token", ("dapi",), r"[a-f0-9]{32}(?:-\d)?", _WORD_END),
    ("doppler_token", ("dp.pt.", "dp.st.", "dp.sa.", "dp.ct.", "dp.scim.", "dp.audit."), r"[A-Za-z0-9]{40,44}+", _WORD_END),
    ("dynatrace_token", ("dt0c01.",), r"[A-Za-z0-9]{24}\.[A-Za-z0-9]{64}", _WORD_END),
    ("linear_key", ("lin_api_",), r"[A-Za-z0-9]{40}", _WORD_END),
    ("grafana_cloud_token", ("glc_",), r"[A-Za-z0-9+/]{32,400}+={0,2}+", r"(?![A-Za-z0-9_=])"),
    ("grafana_service_account", ("glsa_",), r"[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}", _WORD_END),
    ("postman_key", ("PMAK-",), r"[a-f0-9]{24}-[a-f0-9]{34}", _WORD_END),
    ("pulumi_token", ("pul-",), r"[a-f0-9]{40}", _WORD_END),
    ("sendgrid_key", ("SG.",), r"[\w\-]{22}\.[\w\-]{43}", _WORD_END),
    ("twilio_key", ("SK",), r"[0-9a-fA-F]{32}", _WORD_END),
    ("mailgun_key", ("key-",), r"[0-9a-f]{32}", _WORD_END),
    ("atlassian_token", ("ATATT3", "ATCTT3"), r"[\w\-=]{150,}+", _WORD_END),
    ("age_secret_key", ("AGE-SECRET-KEY-1",), r"[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}", _WORD_END),
    ("alibaba_key", ("LTAI",), r"[A-Za-z0-9]{20}", _WORD_END),
    ("clojars_token", ("CLOJARS_",), r"[a-z0-9]{60}", _WORD_END),
    ("dropbox_token", ("sl.",), r"[\w\-.]{130,}+", _WORD_END),
    ("flyio_token", ("FlyV1 fm", "fm1r_", "fm1a_", "fm2_"), r"[\w+/=,]{50,}+", r"(?![\w+/=,])"),
    ("frameio_token", ("fio-u-",), r"[\w=\-]{64}", _WORD_END),
    ("newrelic_key", ("NRAK-", "NRJS-", "NRII-"), r"[\w\-]{19,32}+", _WORD_END),
    ("heroku_key", ("HRKU-",), r"[\w\-]{58,64}+", _WORD_END),
    ("prefect_key", ("pnu_",), r"[A-Za-z0-9]{36}", _WORD_END),
    ("readme_key", ("rdme_",), r"[a-z0-9]{70}", _WORD_END),
    ("rubygems_key", ("rubygems_",), r"[a-f0-9]{48}", _WORD_END),
    ("square_token", ("sq0atp-", "sq0csp-", "EAAA"), r"[\w\-+=]{22,60}+", _WORD_END),
    ("easypost_key", ("EZAK", "EZTK"), r"[a-zA-Z0-9]{54}", _WORD_END),
    ("duffel_token", ("duffel_test_", "duffel_live_"), r"[\w\-=]{43}", _WORD_END),
    ("flutterwave_key", ("FLWSECK_TEST-", "FLWSECK-"), r"[a-h0-9]{32}-X", r"(?![A-Za-z0-9])"),
    ("onepassword_token", ("ops_eyJ",), r"[A-Za-z0-9+/]{250,}+={0,3}+", r"(?![A-Za-z0-9_=])"),
    ("notion_token", ("secret_",), r"[A-Za-z0-9]{43}", _WORD_END),
    ("notion_token_ntn", ("ntn_",), r"[0-9]{11}[A-Za-z0-9]{35}", _WORD_END),
    ("airtable_token", ("pat",), r"[A-Za-z0-9]{14}\.[a-f0-9]{64}", _WORD_END),
    ("groq_key", ("gsk_",), r"[A-Za-z0-9]{52}", _WORD_END),
    ("replicate_token", ("r8_",), r"[A-Za-z0-9]{37}", _WORD_END),
    ("perplexity_key", ("pplx-",), r"[A-Za-z0-9]{48}", _WORD_END),
    ("xai_key", ("xai-",), r"[A-Za-z0-9]{80}", _WORD_END),
    ("dockerhub_token", ("dckr_pat_", "dckr_oat_"), r"[\w\-]{27}", r"(?![\w\-])"),
    ("contentful_token", ("CFPAT-",), r"[\w\-=]{43}", r"(?![\w\-])"),
    ("shippo_token", ("shippo_live_", "shippo_test_"), r"[a-f0-9]{40}", _WORD_END),
    ("typeform_token", ("tfp_",), r"[\w\-.=]{59}", r"(?![\w\-])"),
    ("mapbox_secret_token", ("sk.eyJ",), r"[\w\-.]{50,}+", _WORD_END),
    ("tailscale_key", ("tskey-",), r"[a-z]{1,10}+-[A-Za-z0-9]{10,}+-[A-Za-z0-9]{20,}+", _WORD_END),
    ("netlify_token", ("nfp_",), r"[A-Za-z0-9]{36}", _WORD_END),
    ("supabase_token", ("sbp_",), r"[a-f0-9]{40}", _WORD_END),
    ("supabase_secret_key", ("sb_secret_",), r"[\w\-]{31}", r"(?![\w\-])"),
    ("render_key", ("rnd_",), r"[A-Za-z0-9]{32}", _WORD_END),
    ("langsmith_key", ("lsv2_pt_", "lsv2_sk_"), r"[a-f0-9]{32}_[a-f0-9]{10}", _WORD_END),
    ("figma_token", ("figd_",), r"[\w\-]{40}", r"(?![\w\-])"),
    ("buildkite_token", ("bkua_",), r"[a-f0-9]{40}", _WORD_END),
    ("circleci_token", ("CCIPAT_",), r"[A-Za-z0-9]{22}_[a-f0-9]{40}", _WORD_END),
    ("sourcegraph_token", ("sgp_",), r"(?:[a-f0-9]{16}_|local_)?[a-f0-9]{40}", _WORD_END),
    ("pinecone_key", ("pcsk_",), r"[A-Za-z0-9]{5,6}+_[A-Za-z0-9]{50,70}+", _WORD_END),
    ("deno_token", ("ddp_", "ddw_"), r"[A-Za-z0-9]{36}", _WORD_END),
    ("cloudflare_origin_ca_key", ("v1.0-",), r"[a-f0-9]{24}-[a-f0-9]{146}", _WORD_END),
    ("harness_token", ("pat.", "sat."), r"[\w\-]{22}\.[A-Za-z0-9]{24}\.[A-Za-z0-9]{20}", _WORD_END),
)

# (name, lowercase, regex). A rule runs only on text its gate matches (see linear_regex: RE2 reads
# the text once for all rules). A `lowercase` rule is written for, and run on, the lowercased text
# (case-insensitive at the speed of a literal search); its spans are then replaced in the original
# text. Every regex runs in linear time on any input (bounded or possessive repetitions, literal
# first). Order matters where rules overlap:
# the more specific ones come first (a token's shape before the name it is assigned to, so that
# `FLY_API_TOKEN: FlyV1 fm2_...` loses the whole token, not its first word).
DEFAULT_RULES: tuple[tuple[str, bool, str], ...] = (
    # -----BEGIN OPENSSH PRIVATE KEY----- ... -----END ...----- (also a block cut off by the end).
    ("private_key_block", False,
     r"-----BEGIN (?:[A-Z0-9]+ ){0,4}PRIVATE KEY(?: BLOCK)?-----(?P<secret>(?:(?!-----END )[\s\S])*+)"),
    # scheme://user:password@host (the password; an empty user too: redis://:pw@host).
    ("url_credentials", False,
     r"://[^\s/?#@:'\"]{0,256}:(?![$`]|\[REDACTED\]@)(?P<secret>[^\s/?#@'\"]{1,1024})@"),
    # (Here the provider shapes of _TOKEN_SHAPES run, see _DEFAULTS.) Shapes that do not start with
    # a literal, or keep some context.
    ("azure_client_secret", False, r"(?<![\w~.\-])[\w~.]{3}\dQ~[\w~.\-]{31,34}+(?![\w~.\-])"),
    ("azure_storage_key", False,
     r"(?:AccountKey|SharedAccessKey)=(?P<secret>[A-Za-z0-9+/]{20,}+={0,2}+)"),
    ("mailchimp_key", False, r"(?<![\w])[0-9a-f]{32}-us\d{1,2}+(?![\w])"),
    ("telegram_bot_token", False, r"(?<![\w])\d{8,10}+:AA[\w\-]{33}(?![\w\-])"),
    ("terraform_token", False, r"(?<![\w])[a-z0-9]{14}\.atlasv1\.[\w\-=]{60,70}+"),
    ("slack_webhook", False, r"hooks\.slack\.com/services/(?P<secret>[A-Za-z0-9/_\-]++)"),
    ("discord_webhook", False,
     r"discord(?:app)?\.com/api/webhooks/\d{5,30}+/(?P<secret>[\w\-]{20,100}+)"),
    # Authorization: Bearer xyz / Proxy-Authorization: Basic xyz (header lines, curl -H, JSON).
    ("authorization_header", True,
     r"authorization[\"']?[ \t]*+:[ \t]*+[\"']?"
     r"(?:(?:bearer|basic|token|digest|negotiate|bot|apikey|aws4-hmac-sha256)[ \t]++)?+(?![$`]|\{\{)"
     r"(?P<secret>[^\r\n'\"\\]++)"),
    ("secret_header", True,
     r"(?:api-key|-auth-token|-access-token|private-token|-vault-token|-security-token|cookie)"
     r"[\"']?[ \t]*+:[ \t]*+[\"']?(?![$`]|\{\{)(?P<secret>[^\r\n'\"\\]++)"),
    ("bearer_token", True, r"bearer[ \t]++(?P<secret>[a-z0-9._~+/=\-]{16,})"),
    # --password=x, --password x, --db-password 'x', --token=x, --api-key x, --client-secret x,
    # --account-key x (not --no-password, --password-file or a following option).
    ("secret_option", True,
     r"--(?<![\w-]--)(?!no-)(?>(?:[a-z0-9]++-)*?(?:passw(?:or)?d|pass|passphrase|token|secret|api-?key|"
     r"access-?key|secret-?key|account-?key|auth-?token|client-?secret))(?:=|[ \t]++)" + _VALUE),
    # mysql -psecret, mysqldump -u root -p'secret' (database clients take the password glued to -p).
    ("db_client_password", False,
     rf"(?<![\w/-]){_DB_CLIENTS}\b{_args('mysql|mariadb')}-p(?:\"{_NOT_REF}(?P<secret_dq>[^\"\n]++)\""
     rf"|'(?P<secret_sq>[^'\n]++)'|{_NOT_REF}(?P<secret>[^\s;|&'\"]++))"),
    ("sshpass", False, rf"sshpass\b{_args('sshpass')}-p[ \t]*+" + _VALUE),
    ("redis_cli_password", False, rf"redis-cli\b{_args('redis-cli')}-a[ \t]++" + _VALUE),
    # curl -u user:password, curl --user=user:password
    ("curl_user", False,
     rf"curl(?<![\w/-]curl)\b{_args('curl')}(?:-u|--user|--proxy-user|-U)[ \t]*+=?[ \t]*+[\"']?[^\s:'\"]{{0,256}}:"
     r"(?![$`])(?P<secret>[^\s'\"]++)"),
    # <password>x</password>, <apiKey>x</apiKey> (XML elements); <add key="ClientSecret" value="x"/>.
    ("secret_xml_element", True,
     rf"<(?P<tag>[a-z0-9_.:\-]{{0,64}}?{_KEYWORD}{_NAME_REST})>{_NOT_SECRET_QUOTED}(?P<secret>[^<\n]{{1,4096}}+)</(?P=tag)>"),
    ("secret_xml_key_value", True,
     rf"key=\"[a-z0-9_.:\-]{{0,64}}?{_KEYWORD}{_NAME_REST}\"[ \t]++value=\"{_NOT_SECRET_QUOTED}(?P<secret>[^\"\n]++)\""),
    # System.setProperty("X_TOKEN", "x"), os.Setenv("API_KEY", "x"), putenv("PASSWORD", "x").
    ("secret_setter", True,
     rf"(?:setproperty|setenv|putenv|put|set)\([ \t]*+[\"'][a-z0-9_.\-]{{0,64}}?{_KEYWORD}{_NAME_REST}[\"'][ \t]*+,"
     r"[ \t]*+" + _VALUE),
    # export SECRET=x, PGPASSWORD=x psql, -e DB_PASSWORD=x, password = "x" (config files),
    # "api_key": "x" (JSON), token: x (YAML), x := "s" (Go), $x .= "s" (PHP), "x" => "s", X ?= s (make).
    ("secret_assignment", True, rf"{_KEYWORD}{_NAME_REST}{_ASSIGN}" + _VALUE),
    # fish: set -gx GITHUB_TOKEN x; csh: setenv API_KEY x
    ("secret_set", True,
     rf"\b(?:set(?:[ \t]++-[a-z]++){{0,4}}+|setenv)[ \t]++[a-z0-9_.\-]{{0,64}}?{_KEYWORD}[a-z0-9_.\-]{{0,64}}+[ \t]++" + _VALUE),
    # The fallback: a name that only may be a secret's (AUTH, signing_key, hmac, salt, session) and a
    # value random enough to be one (see _not_random).
    ("secret_by_entropy", True, rf"{_WEAK_KEYWORD}{_NAME_REST}{_ASSIGN}" + _VALUE),
)



# -- shell awareness: the options of common tools that carry a secret ------------------------------


@dataclass(frozen=True)
class _Tool:
    """Where a tool's command line carries a secret. `options`: option -> the prefix its value has
    before the secret ("" for the whole value; "pass:" for openssl's `-passin pass:x`); a
    one-letter option may have its value glued (`-Pphrase`, `7z -pX`). `glued`: its one-letter options take their value glued too (`-Pphrase`,
    `7z -pX`). `split`: the secret is the
    part of such a value after this character (`smbclient -U user%pw`, `lftp -u user,pw`).
    `takes`: other options that take a value (so positions count right). `subcommand`: one of these
    words must come first among the positional words; `positional`: the index, among the positional
    words after it, of the secret (`vault login TOKEN`, `cf auth USER PASSWORD`). `after_word`:
    the word after one of these is the secret (`nmcli ... password X`)."""

    options: dict[str, str]
    subcommand: tuple[str, ...] = ()
    positional: int = -1
    split: str = ""
    takes: frozenset[str] = frozenset()
    after_word: tuple[str, ...] = ()
    glued: bool = False
    unless: tuple[str, ...] = ()  # options that mean there is no positional secret (vault login -method=x)


_REGISTRY_LOGIN = _Tool({"-p": "", "--password": ""}, ("login",), takes=frozenset({"-u", "--username"}))
_TOOLS: dict[str, tuple[_Tool, ...]] = {
    **{name: (_REGISTRY_LOGIN,) for name in ("docker", "podman", "nerdctl", "buildah", "skopeo", "oras", "finch")},
    "helm": (_Tool({"-p": "", "--password": ""}, ("registry",), takes=frozenset({"-u", "--username"})),),
    "az": (_Tool({"-p": "", "--password": ""}, ("login",), takes=frozenset({"-u", "--username", "--tenant", "-t"})),),
    "cf": (_Tool({"-p": ""}, ("login",), takes=frozenset({"-a", "-u", "-o", "-s", "--origin"})),
           _Tool({}, ("auth",), positional=1)),
    "vault": (_Tool({}, ("login",), positional=0, unless=("-method", "--method")),),
    "ssh-keygen": (_Tool({"-P": "", "-N": ""}, takes=frozenset({"-f", "-t", "-b", "-C", "-a", "-Z", "-m"}), glued=True),),
    "zip": (_Tool({"-P": "", "--password": ""}),),
    "unzip": (_Tool({"-P": ""}),),
    **{name: (_Tool({"-p": ""}, glued=True),) for name in ("7z", "7za", "7zr", "7zz")},
    **{name: (_Tool({"-U": "", "--user": ""}, split="%"),) for name in ("smbclient", "rpcclient", "smbcacls", "smbget")},
    "lftp": (_Tool({"-u": "", "--user": ""}, split=","),),
    "doctl": (_Tool({"-t": "", "--access-token": ""}, ("auth",)),),
    "openssl": (_Tool({"-k": "", "-pass": "pass:", "-passin": "pass:", "-passout": "pass:"}),),
    **{name: (_Tool({"-p": "", "--password": ""}, takes=frozenset({"-u", "--username", "--host", "-h"})),)
       for name in ("mongo", "mongosh", "mongodump", "mongorestore", "mongoexport", "mongoimport")},
    **{name: (_Tool({opt: "" for opt in ("-storepass", "-keypass", "-srcstorepass", "-deststorepass",
                                         "-srckeypass", "-destkeypass")}),) for name in ("keytool", "jarsigner")},
    **{name: (_Tool({"-w": ""}),) for name in ("ldapsearch", "ldapadd", "ldapmodify", "ldapdelete", "ldapwhoami",
                                               "ldappasswd", "ldapcompare", "ldapmodrdn")},
    **{name: (_Tool({"-P": ""}),) for name in ("sqlcmd", "bcp")},
    **{name: (_Tool({"-P": "", "--pw": ""}),) for name in ("mosquitto_pub", "mosquitto_sub", "mosquitto_rr")},
    "rabbitmqctl": (_Tool({}, ("add_user", "change_password", "authenticate_user"), positional=1),),
    "nmcli": (_Tool({}, after_word=("password", "wifi-sec.psk", "802-11-wireless-security.psk")),),
    "wpa_passphrase": (_Tool({}, positional=1),),
    "gh": (_Tool({"-b": "", "--body": ""}, ("secret",)),),
    "htpasswd": (),  # its own rule: -b takes the password as the last positional word
}
_TOOL_NAMES = tuple(_TOOLS)
# The tool rule's gates, one per tool (in _TOOL_NAMES' order): its name followed by a blank.
_TOOL_GATES = tuple(re.escape(name) + "[ \t]" for name in _TOOL_NAMES)
# What a command of the tool must contain to carry a secret at all (a subcommand, an option): a
# substring test that spares reading the commands that cannot (`docker run ...`).
def _needs(tool: _Tool) -> tuple[str, ...]:
    """What one command of `tool` must contain to carry its secret: one of its options (glued or
    with `=` too: they contain it), a word after which it comes, or for a positional secret the
    subcommand (or nothing known: "")."""
    found = (*tool.options, *tool.after_word, *(tool.subcommand if tool.positional >= 0 else ()))
    return found or ("",)


_TOOL_NEEDS = {
    name: tuple({"-"} if name == "htpasswd" else {needed for tool in tools for needed in _needs(tool)})
    for name, tools in _TOOLS.items()
}
# The subcommands a tool's secret comes with, when every way it takes one has a subcommand.
_SUBCOMMANDS = {
    name: frozenset(word for tool in tools for word in tool.subcommand)
    for name, tools in _TOOLS.items() if tools and all(tool.subcommand for tool in tools)
}
_FIRST_WORD = re.compile(r"""[ \t]*+([^\s;&|()<>'"`$\\]++)""")
# What may come before a command's name: the start of a line, an operator, a quote (bash -c "..."),
# and words that run the next one (sudo docker ..., env X=1 docker ..., X=1 docker ...).
_BEFORE_COMMAND = frozenset("\n\r;&|(){}`'\"!")
_RUNNERS = frozenset({"sudo", "doas", "env", "time", "exec", "command", "nohup", "xargs", "nice", "then", "do", "else"})
_ENV_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,64}+=[^\s]*+")


def _is_command(text: str, position: int) -> bool:
    """Whether the word at `position` is where a command starts (its name, maybe after a path),
    not an argument (`htpasswd -b docker` does not run docker; `token: htpasswd` runs nothing).
    Looks back a few words at most."""
    while position and text[position - 1] not in " \t\n\r;&|(){}`'\"!":
        position -= 1  # to the start of a path: /usr/bin/docker
        if text[position] != "/" and not (text[position].isalnum() or text[position] in "_.-~"):
            return False
    for _ in range(8):
        end = position
        while end and text[end - 1] in " \t":
            end -= 1
        if end == 0 or text[end - 1] in _BEFORE_COMMAND:
            return True
        if end == position:
            return False  # glued to something else
        start = end
        while start and text[start - 1] not in " \t" and text[start - 1] not in _BEFORE_COMMAND:
            start -= 1
        word = text[start:end]
        if word not in _RUNNERS and not _ENV_ASSIGNMENT.fullmatch(word):
            return False
        position = start
    return False
# A tool's name followed by a blank, where the rest of its command (roughly: up to an operator or
# a newline) holds one of what could carry its secret, or a quote, escape or `$` (then the careful
# reading decides): most commands of a tool (`docker push`, `ssh-keygen -t ed25519`) are passed
# over at the speed of the regex engine.
_TOOL_START = {
    name: re.compile(
        re.escape(name) + r"(?=[ \t])(?=[^;&|()<>\n\r]*?(?:"
        + "|".join(re.escape(needed) for needed in _TOOL_NEEDS[name]) + r"""|['"\\$`]))"""
    )
    for name in _TOOLS
}


# One word of a simple command as the shell reads it (quotes, escapes, $(...) and backticks keep it
# whole); a command ends at an unquoted operator, parenthesis, redirection or newline.
_SHELL_WORD = re.compile(
    r"""[ \t]*+((?:[^\s'"\\;&|()<>`$]++|'[^'\n]*+'?|"(?:[^"\\\n]|\\.)*+"?|\\.?|\$\((?:[^()\n]|\([^()\n]*+\))*+\)?"""
    r"""|\$|`[^`\n]*+`?)++)"""
)
_QUOTING = re.compile(r"""['"\\]""")
# Where a command without quoting ends (an operator, a parenthesis, a redirection, a newline), or
# what makes it need the careful reading (a quote, an escape, `$`, a backtick).
_PLAIN_END = re.compile(  # one class (a fast scan): the characters above, and whitespace but blanks
    r"""[;&|()<>'"\\$`\n\r\x0b\x0c\x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"""
)
_NOT_PLAIN = frozenset("'\"\\$`")
_Word = tuple[str, int, "list[int] | None"]  # (the word without its quotes, where it starts, where each character is)


def _words(text: str, position: int) -> tuple[list[_Word], int]:
    """The words of one simple command from `position`, quotes removed, and where the command
    ends. A word without quotes is kept as it is (its characters are where it starts + i); a quoted
    one is read character by character. `$` and backticks are kept (a word holding them is a
    reference, never taken for a secret)."""
    words: list[_Word] = []
    # Most commands have no quote, escape or substitution before their end: split those at blanks.
    stop = _PLAIN_END.search(text, position)
    end = len(text) if stop is None else stop.start()
    if stop is None or text[end] not in _NOT_PLAIN:
        at = position
        for word in text[position:end].replace("\t", " ").split(" "):
            if not word:
                continue
            at = text.find(word, at)
            words.append((word, at, None))
            at += len(word)
        return words, end
    while True:
        match = _SHELL_WORD.match(text, position)
        if match is None:
            return words, position
        raw, start = match.group(1), match.start(1)
        position = match.end()
        if _QUOTING.search(raw) is None:
            words.append((raw, start, None))
        elif len(raw) >= 2 and raw[0] == raw[-1] and _QUOTING.search(raw, 1, len(raw) - 1) is None:
            words.append((raw[1:-1], start + 1, None))  # one quoted string, nothing to unescape
        else:
            words.append(_unquote(raw, start))


def _unquote(raw: str, start: int) -> _Word:
    chars: list[str] = []
    where: list[int] = []
    i, n = 0, len(raw)
    while i < n:
        c = raw[i]
        if c == "'":
            close = raw.find("'", i + 1)
            close = n if close == -1 else close
            chars.extend(raw[i + 1 : close])
            where.extend(range(start + i + 1, start + close))
            i = close + 1
        elif c == '"':
            i += 1
            while i < n and raw[i] != '"':
                if raw[i] == "\\" and i + 1 < n and raw[i + 1] in '"\\$`':
                    i += 1
                chars.append(raw[i])
                where.append(start + i)
                i += 1
            i += 1
        elif c == "\\" and i + 1 < n:
            chars.append(raw[i + 1])
            where.append(start + i + 1)
            i += 2
        else:
            chars.append(c)
            where.append(start + i)
            i += 1
    return "".join(chars), start, where


def _span(word: _Word, first: int, last: int | None = None) -> list[tuple[int, int]]:
    """The span in the text of characters [first:last] of a word (one per run of characters between
    quotes, `-p"a"b` has two: replacing the quotes would unbalance the line); none for an empty value
    or one that is a reference or a placeholder ($X, $(...), `...`, {{ x }}, %X%): not a secret; none
    either for one that holds a secret already replaced (redacting twice changes nothing)."""
    value, start, where = word
    last = len(value) if last is None else last
    piece = value[first:last]
    if not piece or "$" in piece or "`" in piece or MARKER in piece or piece.startswith(("{{", "%(", "<")) or (
        piece.startswith("%") and piece.endswith("%")
    ):
        return []
    if where is None:
        return [(start + first, start + last)]
    spans = [(where[first], where[first] + 1)]
    for index in where[first + 1 : last]:
        if index == spans[-1][1]:
            spans[-1] = (spans[-1][0], index + 1)
        else:
            spans.append((index, index + 1))
    return spans


def _tool_spans(text: str, named: frozenset[int]) -> list[tuple[int, int]]:
    """The secrets that common tools take on their command line (see `_TOOLS`); `named` holds the
    positions in _TOOL_NAMES of the tools whose gate matched. Only a tool that starts a command
    counts, and each command is read once, so this is linear in the text."""
    starts: list[tuple[int, int, str]] = []
    for position in named:
        name = _TOOL_NAMES[position]
        # A command of the tool can carry a secret only with one of its subcommands or options.
        if any(needed in text for needed in _TOOL_NEEDS[name]):
            starts.extend((match.start(), match.end(), name) for match in _TOOL_START[name].finditer(text))
    spans: list[tuple[int, int]] = []
    position = 0
    for first, last, name in sorted(starts):
        if first < position:
            continue
        if not _is_command(text, first):
            continue
        subcommands = _SUBCOMMANDS.get(name)
        if subcommands:
            word = _FIRST_WORD.match(text, last)
            if word is not None and word.group(1)[0] != "-" and word.group(1) not in subcommands:
                continue  # `docker push ...`: no subcommand of the tool that takes a secret
        command, position = _words(text, last)
        if name == "htpasswd":
            spans.extend(_htpasswd(command))
            continue
        for tool in _TOOLS[name]:
            found = _tool_secrets(tool, command)
            if found:
                spans.extend(found)
                break
    return spans


def _htpasswd(words: list[_Word]) -> list[tuple[int, int]]:
    """htpasswd -b[other flags] FILE USER PASSWORD, or -nb USER PASSWORD."""
    flags = "".join(w[0][1:] for w in words if w[0].startswith("-") and not w[0].startswith("--"))
    if "b" not in flags:
        return []
    positional = [w for i, w in enumerate(words) if not w[0].startswith("-")
                  and not (i and words[i - 1][0] in ("-C", "-r"))]
    index = 1 if "n" in flags else 2
    return _span(positional[index], 0) if len(positional) > index else []


def _tool_secrets(tool: _Tool, words: list[_Word]) -> list[tuple[int, int]]:
    if tool.subcommand and not any(word[0] in tool.subcommand for word in words):
        return []  # `docker push ...`: not the subcommand that takes a secret
    spans: list[tuple[int, int]] = []
    positional: list[_Word] = []
    i = 0
    while i < len(words):
        word = words[i]
        value = word[0]
        if positional and positional[-1][0] in tool.after_word:
            spans.extend(_span(word, 0))
        if value.startswith("-") and len(value) > 1:
            option, equals, _ = value.partition("=")
            if option in tool.options:
                prefix = tool.options[option]
                if equals:
                    target, first = word, len(option) + 1
                elif i + 1 < len(words):
                    i += 1
                    target, first = words[i], 0
                else:
                    break
                spans.extend(_option_value(tool, target, first, prefix))
            elif tool.glued and len(option) > 2 and not option.startswith("--") and option[:2] in tool.options:
                spans.extend(_option_value(tool, word, 2, tool.options[option[:2]]))  # glued: -pSECRET
            elif option in tool.takes and not equals:
                i += 1
        else:
            positional.append(word)
        i += 1
    if tool.subcommand and not (positional and positional[0][0] in tool.subcommand):
        return []
    if tool.positional >= 0 and not any(w[0].partition("=")[0] in tool.unless for w in words):
        after = [w for w in positional[1 if tool.subcommand else 0 :] if "=" not in w[0]]
        if len(after) > tool.positional:
            spans.extend(_span(after[tool.positional], 0))
    return sorted(spans)


def _option_value(tool: _Tool, word: _Word, first: int, prefix: str) -> list[tuple[int, int]]:
    value = word[0]
    if value.startswith("-", first) and first == 0:
        return []  # the next option: the value is missing (read from a prompt)
    if prefix:
        if not value.startswith(prefix, first):
            return []  # openssl -passin env:VAR / file:path / stdin: not the secret itself
        first += len(prefix)
    if tool.split:
        cut = value.find(tool.split, first)
        if cut == -1:
            return []  # smbclient -U alice: the password is asked for
        first = cut + 1
    return _span(word, first)


class PatternError(ValueError):
    """A pattern that does not compile; `index` is its position in the list it came from."""

    def __init__(self, index: int, pattern: str, reason: str) -> None:
        super().__init__(f"pattern {index} ({pattern[:60]!r}) is not a valid regular expression: {reason}")
        self.index = index
        self.reason = reason


Pattern = re.Pattern[str] | LinearPattern


class Finding(NamedTuple):
    """A secret a rule found (see `Redactor.count`): the rule's name, the text it matched, and
    whether it was replaced (False: an allow pattern kept it)."""

    rule: str
    secret: str
    replaced: bool


@dataclass(frozen=True)
class Rule:
    """One compiled pattern. `regex` matches the text itself; `lower_regex`, when set, is the same
    pattern for the lowercased text (used whenever lowercasing keeps the length)."""

    name: str
    regex: Pattern
    lower_regex: re.Pattern[str] | None = None
    # Instead of the regex's matches: a function of the text and of which of `gates` matched it
    # (their positions) that returns the spans to replace, in order.
    finder: Callable[[str, frozenset[int]], list[tuple[int, int]]] | None = None
    # RE2 patterns, one of which must match somewhere in the text for the rule to run; () = the
    # regex's own shadow (see linear_regex.shadow).
    gates: tuple[str, ...] = ()
    # keep(text, first, last): true when the span found is to be left alone after all (an attribute
    # in code, a value that is not random enough for a name that only may be a secret's).
    keep: Callable[[str, int, int], bool] | None = None
    # The regex split into alternatives that each start with a literal (found by a fast search, see
    # _KEYWORD_PARTS): when set, these run instead of `regex`, each only when its own gate matched,
    # and their matches are taken as the whole regex's would be (see _leftmost).
    parts: tuple[Rule, ...] = ()

    @property
    def secret_groups(self) -> tuple[int, ...]:
        """The numbers of the groups named `secret...`, in the order they were written."""
        return tuple(number for name, number in self.regex.groupindex.items() if name.startswith("secret"))

    def gate_patterns(self) -> tuple[str | None, ...]:
        """What the gate matches for this rule (None: the rule always runs)."""
        if self.gates:
            return self.gates
        if self.parts:  # one per part: only the parts whose gate matched run
            return tuple(pattern for part in self.parts for pattern in part.gate_patterns())
        if isinstance(self.regex, LinearPattern):
            return (self.regex.pattern,)
        return (shadow(self.regex.pattern, self.regex.flags),)


def compile_rule(name: str, pattern: str, index: int = 0, lowercase: bool = False) -> Rule:
    """A built-in rule, compiled by Python's `re` (its lookarounds and possessive repeats are what
    keep the built-ins precise; each is written to run in linear time)."""
    try:
        if lowercase:
            return Rule(name, re.compile(pattern, re.IGNORECASE), re.compile(pattern))
        return Rule(name, re.compile(pattern))
    except (re.error, OverflowError, RecursionError, ValueError) as exc:
        raise PatternError(index, pattern, str(exc)) from None


def user_rule(name: str, pattern: str, index: int = 0) -> Rule:
    """A user's pattern (`redact_patterns`, `redact_allow`, `docpilot redact --regex`), compiled by
    RE2 so that no pattern can make redaction slow; PatternError when RE2 refuses it."""
    try:
        return Rule(name, LinearPattern(pattern))
    except LinearPatternError as exc:
        raise PatternError(index, pattern, exc.reason) from None


def literal_rule(text: str, name: str = "literal") -> Rule:
    """A rule that removes exactly `text` (what `docpilot redact` does by default)."""
    return Rule(name, re.compile(re.escape(text)))


def _shape_rule(name: str, literals: Sequence[str], body: str, end: str) -> Rule:
    return Rule(name, re.compile(_shape(literals, body, end)))


# Rules whose spans pass one more test on the text as written (see Rule.keep).
_KEEP: dict[str, Callable[[str, int, int], bool]] = {
    "secret_xml_key_value": _is_code_attribute, "secret_setter": _is_code_attribute,
    "secret_assignment": _is_code_attribute, "secret_set": _is_code_attribute, "secret_by_entropy": _not_random,
}


# Rules run as their literal-first alternatives (see Rule.parts): the same regex, keyword by keyword.
_PARTS: dict[str, tuple[str, ...]] = {
    "secret_assignment": tuple(rf"{part}{_NAME_REST}{_ASSIGN}" + _VALUE for part in _KEYWORD_PARTS),
    "secret_by_entropy": tuple(rf"{part}{_NAME_REST}{_ASSIGN}" + _VALUE for part in _WEAK_KEYWORD_PARTS),
}


def _default_rules() -> tuple[Rule, ...]:
    """DEFAULT_RULES compiled, with the token shapes after the URL credentials (a token in a URL's
    password is the URL's), and the shell-aware rule before the assignments."""
    rules: list[Rule] = []
    for name, lowercase, pattern in DEFAULT_RULES:
        if name == "azure_client_secret":
            rules.extend(_shape_rule(*shape) for shape in _TOKEN_SHAPES)
        if name == "secret_xml_element":
            rules.append(Rule("tool_options", re.compile(r"(?!)"), finder=_tool_spans, gates=_TOOL_GATES))
        rule = compile_rule(name, pattern, 0, lowercase)
        if name in _PARTS:
            rule = dataclasses.replace(rule, parts=tuple(compile_rule(name, part, 0, lowercase) for part in _PARTS[name]))
        rules.append(dataclasses.replace(rule, keep=_KEEP[name]) if name in _KEEP else rule)
    return tuple(rules)


_DEFAULTS = _default_rules()


class Redactor:
    """Compiled rules applied in order; see the module docstring."""

    def __init__(
        self, rules: Iterable[Rule], marker: str = MARKER, allow: Iterable[Pattern] = (), gated: bool = True
    ) -> None:
        self.rules: tuple[Rule, ...] = tuple(rules)
        self.marker = marker
        # Text that is never replaced: a secret found inside a match of one of these is kept.
        self.allow: tuple[Pattern, ...] = tuple(allow)
        self._plans = tuple(
            (rule.regex, rule.lower_regex, rule.secret_groups, rule.finder, rule.keep,
             tuple((part.regex, part.lower_regex, part.secret_groups) for part in rule.parts))
            for rule in self.rules
        )
        # One gate for every rule: entry -> (its rule, its position among the rule's gates).
        patterns: list[str | None] = []
        self._owners: list[tuple[int, int]] = []
        for index, rule in enumerate(self.rules):
            for position, pattern in enumerate(rule.gate_patterns()):
                patterns.append(pattern)
                self._owners.append((index, position))
        # Without the gate every rule runs on every text (the same results, slower: for tests).
        self.gated = gated
        self._gate = _gate_of(tuple(patterns)) if gated else None
        self._everything = {(index, position) for index, position in self._owners}

    @classmethod
    def from_patterns(
        cls, patterns: Sequence[str] = (), defaults: bool = True, allow: Sequence[str] = (), gated: bool = True
    ) -> Redactor:
        """The default rules (unless `defaults` is false) followed by `patterns`, and `allow`'s
        patterns (what is never replaced); PatternError if one does not compile."""
        extra = [user_rule(f"pattern {i}", p, i) for i, p in enumerate(patterns)]
        kept = [user_rule(f"allow {i}", p, i).regex for i, p in enumerate(allow)]
        return cls([*(_DEFAULTS if defaults else ()), *extra], allow=kept, gated=gated)

    def plus(self, rules: Iterable[Rule]) -> Redactor:
        return Redactor([*self.rules, *rules], self.marker, self.allow, self.gated)

    def __bool__(self) -> bool:
        return bool(self.rules)

    # -- text ---------------------------------------------------------------------------------------

    def count(self, text: str, report: list[Finding] | None = None) -> tuple[str, int]:
        """The redacted text and how many secrets were replaced; with `report`, each secret found
        is appended to it, replaced or kept by an allow pattern (`docpilot redact --check`)."""
        total = 0
        # The rules that may match are chosen once, by the text as given (a replacement only puts
        # the marker where a secret was), then run in their order.
        hits = self._gate.which(text) if self._gate is not None else None
        owners = self._owners
        chosen: dict[int, set[int]] = {}
        for index, position in (self._everything if hits is None else (owners[entry] for entry in hits)):
            chosen.setdefault(index, set()).add(position)
        lower: str | None = None
        allowed: list[tuple[int, int]] | None = None
        for index in sorted(chosen):
            regex, lower_regex, groups, finder, keep, parts = self._plans[index]
            if finder is not None:
                found = finder(text, frozenset(chosen[index]))
            elif parts:
                if lower is None:
                    lower = text.lower()
                found = _leftmost([self._target(text, lower, *parts[at]) for at in sorted(chosen[index])])
            else:
                if lower_regex is not None and lower is None:
                    lower = text.lower()
                found = self._spans(*self._target(text, lower, regex, lower_regex, groups))
            if found:
                # A secret already replaced is not counted again (redacting twice changes nothing).
                spans = [span for span in found if span[1] > span[0] and text[span[0] : span[1]] != self.marker]
                if keep is not None:
                    spans = [(first, last) for first, last in spans if not keep(text, first, last)]
                if self.allow and spans:
                    if allowed is None:
                        allowed = [match.span() for regex in self.allow for match in regex.finditer(text)]
                    inside = [(a, b) for a, b in spans if any(x <= a and b <= y for x, y in allowed)]
                    if inside:
                        spans = [span for span in spans if span not in inside]
                        if report is not None:
                            report.extend(Finding(self.rules[index].name, text[a:b], False) for a, b in inside)
                if spans:
                    if report is not None:
                        report.extend(Finding(self.rules[index].name, text[a:b], True) for a, b in spans)
                    text = self._replace(text, spans)
                    total += len(spans)
                    lower = allowed = None  # the text changed: look at it again when needed
        return text, total

    @staticmethod
    def _target(
        text: str, lower: str | None, regex: Pattern, lower_regex: re.Pattern[str] | None, groups: tuple[int, ...]
    ) -> tuple[Pattern, tuple[int, ...], str]:
        """What a rule runs on: a lowercase rule's regex on the lowercased text (when lowercasing
        keeps the length, so spans stay true), else the regex on the text."""
        if lower_regex is not None and lower is not None and len(lower) == len(text):
            return lower_regex, groups, lower
        return regex, groups, text

    @staticmethod
    def _spans(pattern: Pattern, groups: tuple[int, ...], target: str) -> list[tuple[int, int]]:
        """What to replace: each match's secret groups (the outermost, in order), or the match."""
        spans: list[tuple[int, int]] = []
        for match in pattern.finditer(target):
            if not groups:
                if match.end() > match.start():
                    spans.append(match.span())
                continue
            found = sorted(match.span(g) for g in groups if match.start(g) != -1)
            end = -1
            for first, last in found:
                if first >= end:
                    spans.append((first, last))
                    end = last
        return spans

    def _replace(self, text: str, spans: list[tuple[int, int]]) -> str:
        pieces: list[str] = []
        position = 0
        for first, last in spans:
            pieces.append(text[position:first])
            pieces.append(self.marker)
            position = last
        pieces.append(text[position:])
        return "".join(pieces)

    def text(self, text: str) -> str:
        return self.count(text)[0]

    def optional(self, text: str | None) -> tuple[str | None, int]:
        return (None, 0) if text is None else self.count(text)

    # -- model objects ------------------------------------------------------------------------------

    def command(self, entry: CommandEntry, everything: bool = False) -> tuple[CommandEntry, int]:
        """The command with its text, output and error redacted (and, with `everything`, its
        working directory and shell)."""
        command, a = self.count(entry.command)
        output, b = self.optional(entry.output)
        error, c = self.optional(entry.error)
        cwd, d = self.count(entry.working_directory) if everything else (entry.working_directory, 0)
        shell, e = self.count(entry.shell) if everything else (entry.shell, 0)
        if not (a or b or c or d or e):
            return entry, 0
        return msgspec.structs.replace(
            entry, command=command, output=output, error=error, working_directory=cwd, shell=shell
        ), a + b + c + d + e

    def annotation(self, note: Annotation) -> tuple[Annotation, int]:
        text, n = self.count(note.text)
        return (msgspec.structs.replace(note, text=text), n) if n else (note, 0)

    def session(self, session: Session) -> tuple[Session, int]:
        """The whole session with every free-text field redacted; the same object when clean."""
        total = 0

        def each(items: list[_T], fn: Callable[[_T], tuple[_T, int]]) -> list[_T]:
            """A new list when an item changed (items are never changed in place), else `items`."""
            nonlocal total
            out: list[_T] = []
            changed = False
            for item in items:
                new, n = fn(item)
                total += n
                changed = changed or n > 0
                out.append(new)
            return out if changed else items

        description, n = self.count(session.description)
        total += n
        output_file, n = self.optional(session.output_file)
        total += n
        state = session.state
        if isinstance(state, ErrorState):
            message, n = self.count(state.Error)
            total += n
            state = ErrorState(message) if n else state
        commands = each(session.commands, lambda c: self.command(c, everything=True))
        annotations = each(session.annotations, self.annotation)
        events = each(session.events, self._event)
        metadata, n = self._metadata(session.metadata)
        total += n
        if not total:
            return session, 0
        return Session(
            id=session.id, description=description, state=state, created_at=session.created_at,
            updated_at=session.updated_at, started_at=session.started_at, stopped_at=session.stopped_at,
            output_file=output_file, commands=commands, annotations=annotations, events=events,
            metadata=metadata, stats=session.stats,
        ), total

    def _event(self, event: SessionEvent) -> tuple[SessionEvent, int]:
        details, n = self.optional(event.details)
        return (msgspec.structs.replace(event, details=details), n) if n else (event, 0)

    def _metadata(self, meta: SessionMetadata) -> tuple[SessionMetadata, int]:
        total = 0
        values: dict[str, object] = {}
        for name in ("working_directory", "shell_type", "platform", "hostname"):
            values[name], n = self.count(getattr(meta, name))
            total += n
        for name in ("user", "llm_provider"):
            values[name], n = self.optional(getattr(meta, name))
            total += n
        tags = []
        for tag in meta.tags:
            tag, n = self.count(tag)
            tags.append(tag)
            total += n
        settings: dict[str, str] = {}
        for key, value in meta.settings.items():
            key, n = self.count(key)
            value, m = self.count(value)
            settings[key] = value
            total += n + m
        if not total:
            return meta, 0
        return SessionMetadata(tags=tags, settings=settings, **values), total  # type: ignore[arg-type]

    def change(self, change: changes.Change) -> tuple[changes.Change, int]:
        """A journal record's change with its free text redacted (the same object when clean)."""
        if isinstance(change, changes.RecordCommand):
            entry, n = self.command(change.entry, everything=True)
            return (msgspec.structs.replace(change, entry=entry), n) if n else (change, 0)
        if isinstance(change, changes.Annotate):
            note, n = self.annotation(change.annotation)
            return (msgspec.structs.replace(change, annotation=note), n) if n else (change, 0)
        if isinstance(change, changes.EditAnnotation):
            text, n = self.count(change.text)
            return (msgspec.structs.replace(change, text=text), n) if n else (change, 0)
        if isinstance(change, changes.Replace):
            session, n = self.session(change.session)
            reason, m = self.count(change.reason)
            return (msgspec.structs.replace(change, session=session, reason=reason), n + m) if n + m else (change, 0)
        if isinstance(change, changes.Create):
            description, n = self.count(change.description)
            output_file, m = self.optional(change.output_file)
            metadata, k = self._metadata(change.metadata)
            if not n + m + k:
                return change, 0
            return msgspec.structs.replace(
                change, description=description, output_file=output_file, metadata=metadata
            ), n + m + k
        if isinstance(change, changes.Fail):
            message, n = self.count(change.message)
            return (msgspec.structs.replace(change, message=message), n) if n else (change, 0)
        return change, 0  # Pause, Resume, Stop, DeleteAnnotation: no text


def _leftmost(parts: list[tuple[Pattern, tuple[int, ...], str]]) -> list[tuple[int, int]]:
    """The secret spans of a rule's parts, matched as the one regex they were split from would
    match: the leftmost match of any part (the first part on a tie, as an alternation tries its
    branches in order), then the leftmost from where it ended, and so on."""
    spans: list[tuple[int, int]] = []
    position = 0
    upcoming = [pattern.search(target) for pattern, _, target in parts]
    while True:
        best = -1
        for at, (pattern, _, target) in enumerate(parts):
            match = upcoming[at]
            if match is not None and match.start() < position:  # inside the last match taken: look again
                match = upcoming[at] = pattern.search(target, position)  # type: ignore[call-arg]
            if match is not None and (best < 0 or match.start() < upcoming[best].start()):  # type: ignore[union-attr]
                best = at
        if best < 0:
            return spans
        match = upcoming[best]
        assert match is not None
        groups = parts[best][1]
        found = sorted(match.span(group) for group in groups if match.start(group) != -1) if groups else [match.span()]
        end = -1
        for first, last in found:
            if first >= end and last > first:
                spans.append((first, last))
                end = last
        position = max(match.end(), match.start() + 1)


@functools.lru_cache(maxsize=64)
def _gate_of(patterns: tuple[str | None, ...]) -> Gate | None:
    """The gate over these patterns (made once per set of rules: compiling one takes milliseconds);
    None when there is no rule."""
    return Gate(patterns) if patterns else None


def json_escaped(text: str) -> str:
    """`text` as it appears inside a JSON string written by msgspec (non-ASCII kept as is)."""
    return msgspec.json.encode(text).decode("utf-8")[1:-1]
