"""The reproduction report: the paper's tables and figures re-made on the demo zoos."""

from tadrop.report.results import ZooReport
from tadrop.report.zoo_report import write_report

__all__ = ["ZooReport", "write_report"]
