"""The knowledge base: symptoms, causes, diagnostic plans and runbooks per category and rule.

>>> kb = load_knowledge()
>>> d = kb.diagnose("connectivity", ["db_connection_errors"], service="postgres")
>>> d.runbook["id"], d.rules
('database_issues', ('database',))
"""

from pipeline.knowledge.base import (
    CategoryEntry,
    Check,
    Diagnosis,
    DiagnosticPlan,
    EscalationLevel,
    KnowledgeBase,
    KnowledgeError,
    RuleEntry,
    Runbook,
    Step,
)
from pipeline.knowledge.load import builtin_paths, load_knowledge, parse_knowledge

__all__ = [
    "CategoryEntry",
    "Check",
    "DiagnosticPlan",
    "Diagnosis",
    "EscalationLevel",
    "KnowledgeBase",
    "KnowledgeError",
    "RuleEntry",
    "Runbook",
    "Step",
    "builtin_paths",
    "load_knowledge",
    "parse_knowledge",
]
