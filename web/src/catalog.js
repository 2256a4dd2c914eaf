// /api/models: `configurations` is {publisher: {name: entry}}, `models` the ids clients may
// choose (retired ones left out). The descriptions are HTML written in our own catalog.

export function groupCatalog(catalog) {
  const live = new Set(catalog.models ?? []);
  const groups = [];
  for (const [publisher, entries] of Object.entries(catalog.configurations ?? {})) {
    const models = Object.values(entries)
      .map((entry) => ({ id: `${publisher}/${entry.name}`, name: entry.name, publisher,
        description: entry.description ?? '', type: entry.type }))
      .filter((model) => live.has(model.id));
    if (models.length) groups.push({ publisher, models });
  }
  return groups;
}
