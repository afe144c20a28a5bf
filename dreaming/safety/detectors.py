"""The detectors of ``dreaming.safety``: the flag vocabulary, the patterns, and ``scan``.

Each detector is one expression over a normalised view of the text (``dreaming.safety.views``),
behind a cheap screen on the view's words: Python's regex engine tries every alternative at every
position, so text that cannot match is not searched at all.
"""

from __future__ import annotations

import codecs
import re
from functools import lru_cache

from dreaming.safety.views import hidden_texts, normalize

INJECTION = "injection"
FETCH_EXEC = "fetch_exec"
DESTRUCTIVE = "destructive"
COMMAND = "command"
URL = "url"
CREDENTIAL = "credential"
FLAGS = (INJECTION, FETCH_EXEC, DESTRUCTIVE, COMMAND, URL, CREDENTIAL)
DANGEROUS = frozenset({INJECTION, FETCH_EXEC, DESTRUCTIVE})  # never mined
NEEDS_PERSON = frozenset(FLAGS)  # never promoted without a person


_INJECTION_EN = (
    r"\b(?:ignore|disregard|forget|override|bypass|skip|drop)\s+(?:(?:all|any|each|every|of|the|your|my|these|those"
    r"|previous|prior)\s+){0,4}(?:previous|prior|above|earlier|preceding|initial|original|system|safety|existing|old)"
    r"\s+(?:instructions?|prompts?|rules|messages|directions|guidelines|context|commands|directives|orders)"
    r"|\b(?:ignore|disregard|forget)\s+(?:everything|all)\s+(?:above|before|(?:that\s+)?you\s+(?:were|have been)\s+told)"
    r"|\b(?:store|save|write|add|put|keep|record|commit|persist|memori[sz]e|remember)\s+(?:this|that|the following|it"
    r"|these|the rule)\s+(?:\w+\s+){0,3}(?:in|to|into|inside)\s+(?:your\s+|the\s+|my\s+)?(?:long[- ]term\s+|permanent\s+"
    r"|persistent\s+)?memor(?:y|ies)"
    r"|\bremember\s+(?:this\s+|that\s+)?(?:for|in|across|during)\s+(?:all\s+)?(?:future|later|every|subsequent|next)"
    r"\s+(?:sessions?|conversations?|runs?|chats?|tasks?)"
    r"|\b(?:new|updated|revised|real|actual|true|secret|hidden)\s+(?:system\s+)?(?:instructions|prompt|rules)\s*:"
    r"|\byou\s+are\s+(?:now|no longer)\s+(?:a|an|in|the|my|dan|free|unrestricted|jailbroken|an? ai)\b"
    r"|\b(?:act|behave|respond)\s+as\s+(?:if\s+you\s+(?:are|were)|an?\s+(?:unrestricted|unfiltered|jailbroken|evil))"
    r"|\bpretend\s+(?:to\s+be|you\s+are|that\s+you)\b"
    r"|\b(?:developer|god|admin|debug|jailbreak|dan|sudo)\s+mode\s+(?:enabled|on|activated|engaged)"
    r"|\b(?:enable|enter|activate|switch\s+to)\s+(?:developer|god|jailbreak|dan|unrestricted)\s+mode"
    r"|\b(?:ai|llm|language model|assistants?|chatbots?|agents?|models?|claude|chatgpt|gpt)\s*(?:reading this|that"
    r" reads? this)?\s*[,:]\s*(?:you\s+)?(?:must|should|shall|always|never|will)\b"
    r"|\b(?:ai|llm|ai\s+assistants?|ai\s+agents?|language models?)\s+(?:(?:reading|that reads?|who reads?)\s+this\s+)?"
    r"(?:must|should|shall)\s+(?:always|never|now)\b"
    r"|\b(?:note|message|instructions?|attention)\s+(?:to|for)\s+(?:the\s+|any\s+|all\s+)?(?:ai|llm|assistant|agent"
    r"|model|bot)s?\b"
    r"|<\s*/?\s*(?:system|sys|assistant|admin|developer|im_start|im_end)\b[^>]{0,40}>"
    r"|\[/?\s*(?:system|inst|sys|admin)\s*\]|<\|[a-z_]+\|>|(?:^|\n)\s*#{1,4}\s*(?:system|instructions?)\b"
    r"|(?:^|\n)\s*(?:system|developer)\s*(?:prompt|message|override)?\s*:"
    r"|\b(?:do\s+not|don't|never)\s+(?:tell|inform|alert|mention\s+(?:this|it)\s+to)\s+the\s+user"
    r"|\bwithout\s+(?:telling|informing|asking)\s+the\s+user"
    r"|\b(?:print|reveal|show|output|repeat|leak|dump)\s+(?:your\s+|the\s+)?(?:system\s+prompt|hidden\s+instructions"
    r"|initial\s+prompt|instructions\s+above)"
    r"|\bfrom\s+now\s+on,?\s+(?:you\s+)?(?:ignore|disregard|obey|follow\s+only)\b"
)
_INJECTION_INTL = (  # read without homoglyph folding (it would mangle these scripts)
    r"\bignor(?:e|ez|a|ar|e[mn]|iere|ieren|iert|eer)\s+(?:\w+\s+){0,3}(?:instructions|instrucciones|istruzioni"
    r"|instruções|instrucoes|anweisungen|anordnungen|vorgaben|instructies|regole|reglas|règles|consignes)"
    r"|\b(?:oublie[zr]?|olvida|dimentica|vergiss|vergessen sie|esqueça|esqueca|vergeet)\s+(?:\w+\s+){0,3}"
    r"(?:instructions|instrucciones|istruzioni|instruções|anweisungen|instructies|règles|reglas)"
    r"|\b(?:mémorise|memoriza|memorizza|speichere|merke dir|onthoud)\b.{0,40}\b(?:mémoire|memoria|gedächtnis|speicher"
    r"|geheugen)"
    r"|\bdu\s+bist\s+(?:jetzt|nun)\s+(?:ein|eine)\b|\btu\s+es\s+maintenant\b|\bahora\s+eres\b|\bora\s+sei\b"
    r"|игнорир\w*\s+(?:\w+\s+){0,2}(?:инструкц|указан|правил)\w*|забудь\w*\s+(?:\w+\s+){0,2}(?:инструкц|указан)\w*"
    r"|(?:忽略|无视|無視|忘记|忘記|忽視)(?:掉)?(?:之前|以前|先前|上面|上述|前面|所有|全部|一切)?的?(?:所有|全部)?"
    r"(?:指令|指示|说明|說明|规则|規則|提示|设定)"
    r"|(?:以前|前|上記|これまで)の(?:すべての)?(?:指示|命令|指令|ルール)を(?:すべて)?無視"
    r"|이전\s*(?:의\s*)?(?:모든\s*)?(?:지시|명령|지침)\S*\s*무시"
    r"|تجاهل\s+(?:جميع\s+)?التعليمات|अनदेखा\s+करें.{0,20}निर्देश|पिछले\s+(?:सभी\s+)?निर्देशों\s+को\s+अनदेखा"
)
_INJECTION_SQUASHED = (  # letters only: survives any separator between letters
    r"(?:ignore|disregard|forget)(?:all|any|the|your|of)*(?:previous|prior|above|earlier|system)(?:instructions?|prompts?"
    r"|rules)"
    r"|(?:store|save|write|add|put|keep)(?:this|that|it)(?:in|to|into)(?:your|the)?(?:longterm)?memory"
    r"|remember(?:this|that)?for(?:all)?(?:future|every)(?:sessions?|conversations?)"
    r"|(?:developer|jailbreak|dan)modeenabled"
)
_FETCH_EXEC = (
    r"\b(?:curl|wget|fetch|iwr|irm|invoke-webrequest|invoke-restmethod|aria2c|lwp-download|http|httpie)\b[^\n|;]*"
    r"\|\s*(?:sudo\s+(?:-\S+\s+)*)?(?:env\s+)?(?:/usr)?(?:/bin/)?(?:ba|z|da|k|c|tc|fi|a)?sh\b"
    r"|\b(?:curl|wget|iwr|irm|invoke-webrequest|invoke-restmethod)\b[^\n|;]*\|\s*(?:sudo\s+)?(?:python[0-9.]*|perl"
    r"|ruby|node|php|iex|invoke-expression|powershell|pwsh|source)\b"
    r"|\b(?:ba|z|k)?sh\s+(?:-c\s+)?[\"']?\s*<\(\s*(?:curl|wget|fetch)\b"
    r"|\b(?:(?:ba|z|k)?sh\s+-c|eval|source|\.)\s+[\"']?\$\(\s*(?:curl|wget|fetch)\b"
    r"|\b(?:iex|invoke-expression)\b.{0,40}(?:iwr|irm|invoke-webrequest|invoke-restmethod|net\.webclient"
    r"|downloadstring)"
    r"|\bnet\.webclient\)?\s*\.\s*download(?:string|file)\b"
    r"|\bpython[0-9.]*\s+-c\s+.{0,300}(?:urllib|urlopen|requests\.get|http\.client|socket\.|exec\s*\(|__import__)"
    r"|\b(?:perl|ruby|node)\s+-e\s+.{0,300}(?:lwp|socket|http|net::|require\s*\(\s*['\"]https?)"
    r"|\b(?:powershell|pwsh)(?:\.exe)?\s+.{0,60}-(?:e|ec|enc|encodedcommand)\s+[a-z0-9+/=]{16,}"
    r"|\bcertutil(?:\.exe)?\s+.{0,60}-urlcache\b|\bmshta(?:\.exe)?\s+https?:"
    r"|\bbase64\s+(?:-d|--decode|-d\s+-i)\b[^\n|]*\|\s*(?:sudo\s+)?(?:ba|z)?sh\b"
    r"|\b(?:curl|wget)\b[^\n;|]*(?:-o|-O|--output)\s*\S+\s*(?:&&|;)\s*(?:sudo\s+)?(?:ba|z)?sh\s+\S+"
)
_DESTRUCTIVE = (
    r"\brm\s+(?:-[a-z-]+\s+)*-[a-z]*(?:rf|fr|r[a-z]*f|f[a-z]*r)[a-z]*\s+(?:-[a-z-]+\s+)*(?:/|/\*|~|~/|\$home/?|\*"
    r"|\.\./\.\.)(?=$|[\s;&|'\"`)])"
    r"|\brm\s+.{0,40}--no-preserve-root"
    r"|\bmkfs(?:\.\w+)?\s+\S|\bdd\s+[^\n]*\bof=/dev/(?:sd|hd|nvme|disk|xvd|vd|mmcblk|mapper|rdisk)"
    r"|>\s*/dev/(?:sd[a-z]|nvme\d|hd[a-z]|disk\d|xvd[a-z])"
    r"|\bchmod\s+(?:-[a-z]*\s+)*-[a-z]*r[a-z]*\s+(?:0?777|a\+rwx|ugo\+rwx)\s+/(?=$|[\s;&|'\"`*])"
    r"|\bchown\s+(?:-[a-z]*\s+)*-[a-z]*r[a-z]*\s+\S+\s+/(?=$|[\s;&|'\"`])"
    r"|\bdrop\s+(?:database|schema|keyspace)\b"  # (DROP TABLE, DELETE FROM: routine in bug reports and migrations)
    r"|\bgit\s+push\s+(?:[^\n;&|]*\s)?(?:-f|--force|--force-with-lease)\b[^\n;&|]*\b(?:main|master|prod|production"
    r"|release|trunk)\b"
    r"|\bgit\s+push\s+(?:[^\n;&|]*\s)?\S+\s+\+(?:main|master|prod|production|trunk)\b"
    r"|:\s*\(\s*\)\s*\{\s*:\s*\|\s*:\s*&\s*\}\s*;\s*:"
    r"|\bkill\s+-9\s+-1\b|\b(?:shutdown|poweroff|halt)\s+(?:-[a-z]+\s+)*(?:now|-h\s+now|0)\b"
    r"|\bformat\s+[a-z]:(?:\s|$)|\bdel\s+(?:/[sfq]\s+)+[a-z]:\\|\bremove-item\b.{0,60}-recurse.{0,60}(?:[a-z]:\\|\s/)"
    r"|\bfind\s+/\s+(?:[^\n]*\s)?-delete\b|\bterraform\s+destroy\b[^\n]*-auto-approve"
    r"|\bkubectl\s+delete\s+(?:ns|namespace|namespaces|all)\b|\baws\s+s3\s+rb\s+[^\n]*--force"
)
_SHELL_PROGRAMS = (r"sudo|curl|wget|bash|sh|zsh|chmod|chown|rm|dd|mkfs|ssh|scp|rsync|nc|ncat|netcat|telnet|eval"
                   r"|exec|python[0-9.]*|perl|ruby|node|npx|npm|yarn|pnpm|pip3?|uv|poetry|apt(?:-get)?|brew|docker"
                   r"|kubectl|helm|terraform|git|make|pytest|tox|nox|psql|mysql|iex|powershell|pwsh|systemctl|kill")
_COMMAND = (
    r"`[^`\n]*\b(?:bash|shell|sh|terminal|execute_bash|run_shell_command|run_command|exec|local_shell"
    r"|run_terminal_cmd|powershell):[\w.+-]+`"  # a shell step of a workflow ("`Bash:pytest`")
    r"|`\s*(?:\$\s+)?(?:" + _SHELL_PROGRAMS + r")(?:\s+[^`\n]+)?`"  # `pytest -q`, `uv pip install`, `make`
    r"|`\s*(?:\./|/)?[\w.-]+(?:/[\w.-]+)*\s+-{1,2}\w[^`\n]*`"  # `tool --flag …`
    r"|```|(?:^|\n)\s*\$\s+\w"
    r"|\b(?:run|execute|exec|type|paste|invoke)\s+(?:the\s+)?(?:command\s+|script\s+)?[`'\"]\s*\S"
    r"|(?:^|[\s(\"'])(?:" + _SHELL_PROGRAMS + r")\s+(?:-{1,2}[\w-]+|install|add|run|exec|push|apply|delete|rm|up"
    r"|-c|-e)\b"
    r"|\|\s*(?:ba|z)?sh\b"
)
_URL = (
    r"\b(?:https?|ftp|sftp|file|wss?|ssh)://|\bwww\.[\w-]+\.[a-z]{2,}"
    r"|\b[a-z0-9][a-z0-9-]*(?:\.[a-z0-9-]+)*\.(?:com|net|org|io|sh|dev|app|xyz|ru|cn|co|me|info|biz|top|site|online"
    r"|example|ai|cloud|tk|zip|mov|link|click|onion)(?![\w.])"
    r"|\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b"
)
_CREDENTIAL = (
    r"\b(?:passwords?|passwd|passphrases?|pass\s*code|pwd\s*[:=]|api[\s_-]?keys?|access[\s_-]?keys?|secret[\s_-]?keys?"
    r"|private[\s_-]?keys?|ssh[\s_-]?keys?|deploy[\s_-]?keys?|client[\s_-]?secrets?|credentials?|creds\b"
    r"|(?:auth|access|api|bearer|github|gitlab|slack|session|refresh|personal[\s_-]access|oauth|jwt)[\s_-]?tokens?"
    r"|tokens?\s*[:=]|bearer\s+\S|authorization\s*:|aws_secret|aws_access_key_id|\.env\b|id_rsa|\.pem\b)"
)
_RX = {
    INJECTION: re.compile(_INJECTION_EN),
    "injection_intl": re.compile(_INJECTION_INTL),
    "injection_squashed": re.compile(_INJECTION_SQUASHED),
    FETCH_EXEC: re.compile(_FETCH_EXEC),
    DESTRUCTIVE: re.compile(_DESTRUCTIVE),
    COMMAND: re.compile(_COMMAND),
    URL: re.compile(_URL),
    CREDENTIAL: re.compile(_CREDENTIAL),
}
_LETTERS = re.compile(r"[^a-z]+")
_WORDS = re.compile(r"[a-z]+")

# Cheap screens (on the words of a view) before each detector's expression: Python's regex engine tries
# every alternative at every position, so text that cannot match is not searched at all.
_T = frozenset
_INJ_VERBS = _T("ignore disregard forget override bypass skip drop ignoring".split())
_INJ_OBJECTS = _T("instructions instruction prompt prompts rules messages directions guidelines context commands "
                  "directives orders everything all".split())
_INJ_AI = _T("ai llm llms assistant assistants chatbot chatbots agent agents model models claude chatgpt gpt bot "
             "bots language".split())


def _screen_injection(w: frozenset, v: str) -> bool:
    return bool(
        (w & _INJ_VERBS and w & _INJ_OBJECTS) or w & {"memory", "memories", "pretend", "mode", "jailbreak"}
        or ("remember" in w and w & {"future", "later", "every", "subsequent", "next"})
        or (":" in v and w & {"instructions", "prompt", "rules", "system", "developer"})
        or ("you" in w and w & {"now", "longer"}) or (w & {"act", "behave", "respond"} and "as" in w)
        or (w & _INJ_AI and w & {"must", "should", "shall", "always", "never", "will", "note", "message",
                                  "attention", "instructions", "instruction"})
        or ("<" in v and w & {"system", "sys", "assistant", "instructions", "instruction", "admin", "developer",
                               "im"}) or "<|" in v or ("[" in v and w & {"system", "inst", "sys", "admin"})
        or ("#" in v and w & {"system", "instructions"})
        or ("user" in w and w & {"tell", "inform", "alert", "mention", "telling", "informing", "asking"})
        or (w & {"prompt", "instructions"} and w & {"print", "reveal", "show", "output", "repeat", "leak", "dump"})
        or ("now" in w and w & {"ignore", "disregard", "obey", "follow"})
    )


_FETCHERS = _T("curl wget fetch iwr irm aria2c httpie iex webclient downloadstring lwp certutil mshta base64 "
               "invoke".split())
_INTERPRETERS = _T("python perl ruby node powershell pwsh".split())
_DESTROYERS = _T("rm mkfs dd chmod chown drop truncate delete git kill shutdown poweroff halt format del remove find "
                 "terraform kubectl aws dev".split())
_SHELL_WORDS = _T(re.sub(r"[^a-z|]", "", _SHELL_PROGRAMS.replace("apt(?:-get)?", "apt")).split("|")) | {
    "run", "execute", "exec", "type", "paste", "invoke"}
_INTL_HINTS = ("ignor", "oubli", "olvida", "dimentica", "vergiss", "vergessen", "esque", "vergeet", "memori",
               "speicher", "merke", "onthoud", "bist", "tu es", "eres", "ora sei")
_SQUASH_HINTS = ("ignore", "disregard", "forget", "memory", "remember", "mode")
_SCREENS = {
    INJECTION: _screen_injection,
    FETCH_EXEC: lambda w, v: bool(w & _FETCHERS or (w & _INTERPRETERS and (" -c" in v or " -e" in v))),
    DESTRUCTIVE: lambda w, v: bool(w & _DESTROYERS or ":(" in v or ": (" in v),
    COMMAND: lambda w, v: "`" in v or "$" in v or "|" in v or bool(w & _SHELL_WORDS),
    URL: lambda w, v: "." in v or "://" in v,
    CREDENTIAL: lambda w, v: True,
}


def secret_kinds(text: str | None) -> list[str]:
    """The kinds of secret ``dreaming.redaction`` finds in ``text`` (empty when none)."""
    if not text:
        return []
    from dreaming.redaction import redact

    return redact(text)[1]


def _views(text: str) -> tuple[list[str], list[str]]:
    """(folded views, views without homoglyph folding) of ``text`` and of whatever it hides; the second
    list holds only views that differ from the first."""
    parts = [text, *hidden_texts(text)]
    folded = [normalize(p) for p in parts]
    plain = [x for x in (normalize(p, fold=False) if not p.isascii() else None for p in parts) if x]
    return folded, [x for x in plain if x not in folded]


def _search(flag: str, v: str, words: frozenset) -> bool:
    return _SCREENS[flag](words, v) and _RX[flag].search(v) is not None


@lru_cache(maxsize=4096)
def scan(text: str | None, only: frozenset[str] | None = None) -> frozenset[str]:
    """The flags of ``text`` (see the module docstring): what a memory built from it would make an agent do.
    ``only`` limits the detectors run (``dangerous`` asks for the three that stop mining)."""
    if not text or not text.strip():
        return frozenset()
    wanted = FLAGS if only is None else tuple(f for f in FLAGS if f in only)
    folded, plain = _views(text)
    found: set[str] = set()
    for v in folded:
        words = _T(_WORDS.findall(v))
        for flag in wanted:
            if flag not in found and _search(flag, v, words):
                found.add(flag)
        if INJECTION in wanted and INJECTION not in found and any(k in v for k in _SQUASH_HINTS):
            if _RX["injection_squashed"].search(_LETTERS.sub("", v)):
                found.add(INJECTION)
    if INJECTION in wanted and INJECTION not in found:
        for v in plain + folded:  # other scripts; written backwards; ROT13
            intl = not v.isascii() or any(k in v for k in _INTL_HINTS)
            if ((intl and _RX["injection_intl"].search(v))
                    or (v in plain and _search(INJECTION, v, _T(_WORDS.findall(v))))):
                found.add(INJECTION)
                break
        else:
            for v in (folded[0][::-1], codecs.encode(folded[0], "rot13")):
                if _search(INJECTION, v, _T(_WORDS.findall(v))):
                    found.add(INJECTION)
                    break
    if CREDENTIAL in wanted and CREDENTIAL not in found and secret_kinds(text):
        found.add(CREDENTIAL)
    if COMMAND in wanted and found & {FETCH_EXEC, DESTRUCTIVE}:
        found.add(COMMAND)
    return frozenset(found)


def dangerous(text: str | None) -> frozenset[str]:
    """The flags of ``text`` that keep it from being mined at all."""
    return scan(text, DANGEROUS) if text else frozenset()


def needs_person(text: str | None) -> frozenset[str]:
    """The flags of ``text`` that keep a memory holding it from being promoted without a person."""
    return scan(text) & NEEDS_PERSON if text else frozenset()
