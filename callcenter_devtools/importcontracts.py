"""An import-linter contract type of our own: a feature package's public modules stand alone.

The feature packages may import each other's ``events`` and ``ports`` modules and nothing else (the
``independence`` contract in ``.importlinter`` ignores exactly those imports). That is only safe if those modules
themselves import nothing of any feature package but other public modules: otherwise importing ``calls.events``
would drag ``calls.models`` along, and the ignored import would hide it. This contract checks that, directly:

    [importlinter:contract:public-modules]
    name = ...
    type = public_modules
    packages = calls seats ...
    public = events ports

Registered in ``.importlinter`` under ``contract_types``; run by ``make lint`` (``lint-imports``).
"""

from __future__ import annotations

from grimp import ImportGraph
from importlinter import Contract, ContractCheck, fields, output


class PublicModulesContract(Contract):
    packages = fields.ListField(subfield=fields.StringField())
    public = fields.ListField(subfield=fields.StringField())

    def _names(self, field: str) -> set[str]:
        # The fields hold the parsed option values once the contract is made (import-linter fills them in).
        return {str(value) for value in getattr(self, field)}

    def _is_public(self, module: str) -> bool:
        package, _, rest = module.partition(".")
        return package in self._names("packages") and rest.split(".", 1)[0] in self._names("public")

    def _is_feature(self, module: str) -> bool:
        return module.split(".", 1)[0] in self._names("packages")

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        broken: list[dict[str, object]] = []
        public_modules = sorted(module for module in graph.modules if self._is_public(module))
        for importer in public_modules:
            for imported in sorted(graph.find_modules_directly_imported_by(importer)):
                if self._is_feature(imported) and not self._is_public(imported):
                    details = graph.get_import_details(importer=importer, imported=imported)
                    lines = sorted({detail["line_number"] for detail in details})
                    broken.append({"importer": importer, "imported": imported, "lines": lines})
            output.verbose_print(verbose, f"Checked the imports of {importer}.")
        return ContractCheck(kept=not broken, metadata={"broken": broken, "checked": public_modules})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for item in check.metadata["broken"]:
            lines = ", ".join(f"l.{line}" for line in item["lines"])
            output.print_error(f"{item['importer']} is public and must not import {item['imported']} ({lines})")
            output.new_line()
