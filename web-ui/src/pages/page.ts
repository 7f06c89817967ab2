export interface Page {
  el: HTMLElement;
  destroy?(): void;
}
